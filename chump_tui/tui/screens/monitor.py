"""Monitor screen: a reflowing grid of dispatch cards, the selected card's live output,
the status line, and kill / retry / continuous / diff / shell / remove-worktree keys."""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from chump_tui.dispatch_record import Dispatch
from chump_tui.tui.footer_keys import FIRST_KEYS, refuse_watch_only_key
from chump_tui.tui.screens.confirm import Confirm
from chump_tui.tui.screens.confirm_kill import ConfirmKill
from chump_tui.tui.text import assemble
from chump_tui.tui.widgets.dispatch_card import DispatchCard
from chump_tui.tui.widgets.output_view import OutputView
from chump_tui.tui.widgets.status_line import StatusLine, status_text
from chump_tui.tui.widgets.title_bar import TitleBar
from chump_tui.watchdog import Quiet

if TYPE_CHECKING:
    from chump_tui.tui.app import ChumpApp

CARD_MIN_WIDTH = 52
MAX_ENDED_CARDS = 24
"""Ended attempts keep a card up to this many (the most recent); every attempt stays in the
summary. A grid of thousands of cards (hours of continuous mode) would make every layout,
and so every key press, slower."""


def cards_to_show(dispatches: dict[str, Dispatch], active: int) -> list[str]:
    """Every active dispatch (``active`` of them) and the most recent ended ones, in
    dispatch order. Walks back from the newest row and stops once it has them all, so the
    cost does not grow with the hours of attempts behind them."""
    shown: list[str] = []
    ended = 0
    for key in reversed(dispatches):
        if active <= 0 and ended >= MAX_ENDED_CARDS:
            break
        if dispatches[key].active:
            active -= 1
            shown.append(key)
        elif ended < MAX_ENDED_CARDS:
            ended += 1
            shown.append(key)
    shown.reverse()
    return shown


TAIL_REFRESH_S = 0.25



# What a read-only view does not offer (hidden; the key says why).
WATCH_ONLY_HIDES = ("kill", "retry", "toggle_continuous", "remove_worktree")

class MonitorScreen(Screen[None]):
    BINDINGS = [
        *FIRST_KEYS,
        # Kill on a key no movement uses (k9s's): k moves, as in vim.
        Binding("ctrl+k", "kill", "Kill"),
        Binding("r", "retry", "Retry"),
        Binding("f", "follow_up", "Follow up"),
        Binding("t", "tool_results", "Tools"),
        Binding("c", "toggle_continuous", "Refill"),
        Binding("g", "diff", "Patch"),
        Binding("o", "shell", "Shell"),
        Binding("x", "remove_worktree", "Rm tree"),
        Binding("z", "maximize_output", "Zoom output"),
        # Priority: arrows and hjkl select cards whatever has focus (the output pane
        # scrolls with PageUp/PageDown/Home/End and the wheel).
        Binding("left,h", "move(-1)", "Prev card", show=False, priority=True),
        Binding("right,l", "move(1)", "Next card", show=False, priority=True),
        Binding("up,k", "move_row(-1)", "Card above", show=False, priority=True),
        Binding("down,j", "move_row(1)", "Card below", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.selected: str | None = None
        self._seen_version = -1
        self._cards: dict[str, DispatchCard] = {}
        self.hidden = 0  # older ended attempts without a card (in the summary)
        self._status_key: tuple[object, ...] | None = None
        self.follow_next_attempt: str | None = None  # gap id whose next attempt to select
        self._columns = 2
        self._last_tails = 0.0

    @property
    def chump(self) -> ChumpApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with VerticalScroll(id="cards-scroll", can_focus=False):
            yield Static("No dispatches yet. Go to the backlog (b), select gaps (space or a) "
                         "and dispatch (d).", id="empty")
            yield Grid(id="cards")
        yield OutputView(id="output")
        yield StatusLine(id="status")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A read-only view (another console holds the session) changes no agent."""
        return not (self.chump.setup.read_only and action in WATCH_ONLY_HIDES)

    def on_key(self, event: events.Key) -> None:
        refuse_watch_only_key(self.chump, self.BINDINGS, WATCH_ONLY_HIDES, event)

    def on_mount(self) -> None:
        self.refresh_view(set(self._cards))
        self.ready = True

    def on_resize(self, event: events.Resize) -> None:
        self._columns = max(1, event.size.width // CARD_MIN_WIDTH)
        self.query_one("#cards", Grid).styles.grid_size_columns = self._columns

    # ---------------------------------------------------------------- redraw
    def refresh_view(self, dirty_output: set[str]) -> None:
        app = self.chump
        now = app.setup.clock()
        engine = app.engine
        grid = self.query_one("#cards", Grid)
        if app.version != self._seen_version:
            self._seen_version = app.version
            shown = cards_to_show(app.dispatches, app.tally.active())
            gone = [key for key in self._cards if key not in shown]
            spare = [self._cards.pop(key) for key in gone]
            new_cards = []
            for key in shown:
                if key in self._cards:
                    continue
                if spare:  # reuse a card that left: no widget churn over hours of attempts
                    card = spare.pop()
                    card.rebind(key)
                    grid.move_child(card, after=len(grid.children) - 1)
                else:
                    card = DispatchCard(key)
                    new_cards.append(card)
                self._cards[key] = card
            for card in spare:
                card.remove()
            if new_cards:
                grid.mount_all(new_cards)
            self.hidden = len(app.dispatches) - len(self._cards)
            if self.follow_next_attempt is not None:  # a retry: its new card is selected
                latest = app.latest_by_gap.get(self.follow_next_attempt)
                if latest is not None and latest.key in self._cards and latest.key != \
                        self.selected:
                    self.follow_next_attempt = None
                    self.select(latest.key)
            self.query_one("#empty").display = not self._cards
            if (self.selected is None or self.selected in gone) and self._cards:
                self.select(next(reversed(self._cards)) if gone else next(iter(self._cards)))
        # Only cards in view are redrawn: with a hundred agents flooding output, drawing
        # the ones nobody can see is most of the work. Others catch up when scrolled in.
        viewport = self.query_one("#cards-scroll").region
        tail_due = time.monotonic() - self._last_tails >= TAIL_REFRESH_S
        if tail_due:
            self._last_tails = time.monotonic()
        for key, card in self._cards.items():
            if card.drawn and not viewport.overlaps(card.region):
                continue
            record = app.dispatches[key]
            fresh = tail_due or not card.drawn
            version = engine.output_lines_seen(key) if fresh else card.tail_version
            tail = engine.output_tail(key, 3) if version != card.tail_version else card.tail
            act = engine.activity(key) if record.active else None
            quiet = engine.watchdog_state(key, now) if record.active else None
            card.show(record, now, tail, version, act,
                      quiet if isinstance(quiet, Quiet) else None)
        if self.selected is not None:
            engine.watch(self.selected)  # again: its agent may have started since
            view = self.query_one(OutputView)
            seen = engine.output_lines_seen(self.selected)
            if self.selected != view.shown_key or seen != view.shown_seen:
                view.follow(self.selected, seen, engine.output_tail(self.selected))
        # The line counts every attempt (thousands after hours of continuous mode): redrawn
        # when something changed, else once a second for the poll countdown.
        queued = engine.queued()
        alerts = self.alerts()
        status_key = (app.version, int(time.monotonic()), app.github_error, tuple(queued),
                      tuple(alerts))
        if status_key != self._status_key:
            self._status_key = status_key
            self.query_one(StatusLine).set_text(status_text(
                app.tally, engine.next_poll_in_s(), app.github_error,
                app.continuous_on(), engine.reflections.pending(), app.setup.dry_run,
                self.hidden, queued, alerts))

    def alerts(self) -> list[str]:
        """The session's budget spent (from the tally: no walk over the rows), a failing
        notification sink."""
        app = self.chump
        found = []
        limit = app.engine.config.fleet_budget_usd
        if limit and app.tally.spent_usd >= limit:
            found.append(f"budget ${limit:g} spent: dispatch paused")
        trouble = app.notifier.trouble() if app.notifier is not None else None
        if trouble:
            found.append(f"notify {trouble}")
        broker = getattr(app.engine.spawner, "trouble", None)  # a fleet's link
        said = broker() if broker is not None else None
        if said:
            found.append(said)
        return found

    def on_screen_suspend(self) -> None:
        self.chump.engine.watch(None)  # nobody looks at an agent's output now

    def on_screen_resume(self) -> None:
        if self.selected is not None:
            self.chump.engine.watch(self.selected)

    def select(self, key: str) -> None:
        previous = self._cards.get(self.selected) if self.selected else None
        if previous is not None:
            previous.remove_class("-selected")
        self.selected = key
        self.chump.engine.watch(key)  # a fleet agent's whole output, while looked at
        card = self._cards.get(key)
        if card is not None:
            card.add_class("-selected")
            card.scroll_visible()

    def on_dispatch_card_chosen(self, message: DispatchCard.Chosen) -> None:
        self.select(message.key)
        self.refresh_view(set())

    def selected_dispatch(self) -> Dispatch | None:
        if self.selected is None:
            self.notify("No card selected.", severity="warning")
            return None
        return self.chump.dispatches.get(self.selected)

    # --------------------------------------------------------------- actions
    def action_move(self, step: int) -> None:
        keys = list(self._cards)
        if not keys:
            return
        index = keys.index(self.selected) if self.selected in keys else 0
        self.select(keys[max(0, min(len(keys) - 1, index + step))])
        self.refresh_view(set())

    def action_move_row(self, step: int) -> None:
        self.action_move(step * self._columns)

    def action_kill(self) -> None:
        if not self.chump.writable():
            return
        d = self.selected_dispatch()
        if d is None:
            return
        engine = self.chump.engine
        if d.phase == "killing":
            self.app.push_screen(ConfirmKill(d, engine.config.kill_grace_s,
                                             lambda: engine.force_kill(d.key), force=True))
            return
        if d.waiting_for_pr:
            self.notify(f"{d.gap_id} #{d.attempt} exited already: nothing to kill (r retries "
                        "it now).", severity="warning")
            return
        if d.phase not in ("running", "stalled"):
            self.notify(f"{d.gap_id} #{d.attempt} is {d.label()}: nothing to kill.",
                        severity="warning")
            return
        self.app.push_screen(ConfirmKill(d, engine.config.kill_grace_s,
                                         lambda: engine.kill(d.key)))

    def action_retry(self) -> None:
        if not self.chump.writable():
            return
        d = self.selected_dispatch()
        if d is None:
            return
        if not d.retryable:
            self.notify(f"{d.gap_id} #{d.attempt} is {d.label()}: only an ended, unshipped "
                        "attempt (or one that exited without a PR) can be retried.",
                        severity="warning")
            return
        if any(o.active and not o.waiting_for_pr for o in self.chump.dispatches.values()
               if o.gap_id == d.gap_id):
            self.notify(f"{d.gap_id} already has an attempt running.", severity="warning")
            return
        self.notify(f"retrying {d.gap_id} as attempt {d.attempt + 1}")
        self.follow_next_attempt = d.gap_id
        self._retry(d.key)

    @work(thread=True, group="dispatch", exit_on_error=False)
    def _retry(self, key: str) -> None:
        self.chump.engine.retry(key)

    def action_follow_up(self, prefill: str = "") -> None:
        """Resume the selected attempt's agent with a message (``prefill``: a review note)."""
        if not self.chump.writable():
            return
        d = self.selected_dispatch()
        if d is None:
            return
        why = self.chump.engine.why_no_follow_up(d.key)
        if why is not None:
            self.notify(f"No follow-up to {d.gap_id} #{d.attempt}: {why}.", severity="warning")
            return
        from chump_tui.tui.screens.follow_up import FollowUp

        def send(message: str | None) -> None:
            if message:
                self.notify(f"following up {d.gap_id} #{d.attempt} (run {d.run + 1})")
                self._follow_up(d.key, message)

        self.app.push_screen(FollowUp(d, prefill), send)

    @work(thread=True, group="follow-up", exit_on_error=False)
    def _follow_up(self, key: str, message: str) -> None:
        error = self.chump.engine.follow_up(key, message)
        if error is not None:
            self.app.call_from_thread(self.notify, f"{key}: no follow-up: {error}",
                                      severity="error")

    def action_tool_results(self) -> None:
        d = self.selected_dispatch()
        if d is None:
            return
        if not d.log_path:
            self.notify(f"{d.gap_id} #{d.attempt} has no log: it never started.",
                        severity="warning")
            return
        from chump_tui.tui.screens.tool_results import ToolResultsScreen

        self.app.push_screen(ToolResultsScreen(d))

    def action_maximize_output(self) -> None:
        """The output pane fills the screen (again: back to the cards)."""
        view = self.query_one(OutputView)
        if self.maximized is view:
            self.minimize()
        else:
            self.maximize(view)

    def action_toggle_continuous(self) -> None:
        if not self.chump.writable():
            return
        app = self.chump
        if app.setup.dry_run:
            self.notify("dry-run: continuous mode would dispatch for real; start with --execute.",
                        severity="warning")
            return
        on = not app.engine.config.continuous
        self._set_continuous(on)
        self.notify(f"continuous mode {'ON' if on else 'off'}"
                    + (f": refilling up to {app.engine.config.max_parallel} agents" if on else ""))

    @work(thread=True, group="dispatch", exit_on_error=False)
    def _set_continuous(self, on: bool) -> None:
        self.chump.engine.set_continuous(on)

    def action_diff(self) -> None:
        d = self.selected_dispatch()
        if d is None:
            return
        if not d.branch:
            self.notify(f"{d.gap_id} #{d.attempt} has no branch.", severity="warning")
            return
        from chump_tui.tui.screens.patch_view import PatchScreen

        app = self.chump
        review = None if app.setup.read_only else self.action_follow_up
        self.app.push_screen(PatchScreen(d, app.setup.repo_root, app.engine.config.base_ref,
                                         on_review=review))

    def action_shell(self) -> None:
        d = self.selected_dispatch()
        if d is None:
            return
        if not os.path.isdir(d.worktree):
            gone = "was removed (x)" if d.worktree_removed else "does not exist"
            self.notify(f"{d.worktree} {gone}.", severity="warning")
            return
        shell = os.environ.get("SHELL", "/bin/sh")
        try:
            with self.app.suspend():
                print(f"chump-tui: shell in {d.worktree} (exit to return to the console)")
                subprocess.run([shell], cwd=d.worktree, check=False)
        except Exception as exc:  # SuspendNotSupported in headless or web drivers
            self.notify(f"cannot open a shell here: {exc}", severity="error")

    def action_remove_worktree(self) -> None:
        if not self.chump.writable():
            return
        d = self.selected_dispatch()
        if d is None:
            return
        busy = [o for o in self.chump.dispatches.values() if o.active and o.gap_id == d.gap_id]
        if busy:
            self.notify(f"{d.gap_id} #{busy[0].attempt} is {busy[0].label()} in this worktree: "
                        "kill it first.", severity="warning")
            return
        lines = [assemble(d.worktree),
                 assemble("(git worktree remove --force; the branch ", d.branch, " is kept)")]
        if d.pr is not None and d.pr.state == "OPEN":
            lines += [Text(), assemble((f"PR #{d.pr.number} is still OPEN.", "yellow"),
                                       f" Its branch {d.branch} is kept; only the local "
                                       "worktree goes.")]
        body = Text("\n").join(lines)

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(d.key)

        self.app.push_screen(Confirm(f"Remove worktree of {d.gap_id}?", body, "Remove (y)"),
                             answered)

    @work(thread=True, group="git", exit_on_error=False)
    def _remove(self, key: str) -> None:
        error = self.chump.engine.remove_worktree(key)
        message = f"worktree of {key} removed" if error is None else f"not removed: {error}"
        self.app.call_from_thread(self.notify, message,
                                  severity="information" if error is None else "error")
