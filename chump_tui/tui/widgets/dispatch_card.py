"""One card per dispatch attempt: identity, state, deadline bar, PR, what the agent is
doing now (or what its run cost), the last output lines."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from chump_tui.activity import Activity, counters_text
from chump_tui.crash_log import draw_failure
from chump_tui.dispatch_record import Dispatch, fmt_duration
from chump_tui.outside_text import visible
from chump_tui.pricing import cost_of
from chump_tui.watchdog import Quiet

TAIL_LINES = 2
BAR_WIDTH = 24
CARD_LINES = 7 + TAIL_LINES

STATE_STYLE = {
    "SHIPPED": "bold black on green",
    "CI-FAILED": "bold white on red",
    "KILLED": "bold white on red",
    "SPAWN-FAILED": "bold white on red",
    "STALLED": "bold black on yellow",
    "KILLING": "bold white on dark_orange",
    "DISPATCHING": "bold black on grey70",
    "QUEUED": "bold black on grey70",
    "TAKEN": "bold black on grey70",
    "EXITED, NO PR": "bold black on grey70",
    "LOST": "bold white on magenta",
}


def state_class(label: str) -> str:
    if label.startswith("PR OPEN") or label == "RUNNING":
        return "running"
    if label.startswith("EXITED ") and label != "EXITED, NO PR":
        return "exited"
    return label.lower().replace(",", "").replace(" ", "-")


def state_style(label: str) -> str:
    if label.startswith("EXITED ") and label != "EXITED, NO PR":
        return "bold white on red"
    return STATE_STYLE.get(label, "bold white on blue")


def deadline_bar(elapsed: float, soft: float) -> Text:
    """A bar whose full width is the hard (2x soft) deadline; '|' marks the soft one."""
    hard = 2 * soft
    filled = min(BAR_WIDTH, int(BAR_WIDTH * elapsed / hard)) if hard > 0 else BAR_WIDTH
    soft_at = BAR_WIDTH // 2
    style = "green" if elapsed <= soft else ("yellow" if elapsed <= hard else "red")
    bar = Text()
    for i in range(BAR_WIDTH):
        char = "█" if i < filled else "░"
        if i == soft_at and i >= filled:
            char = "┃"
        bar.append(char, style=style if i < filled else "grey42")
    return bar


def activity_line(d: Dispatch, now: float, act: Activity | None) -> Text:
    """``▶ Bash  cargo test · 4s ago`` while it runs (``waiting on the model API (retry 3)``
    while its harness retries); how it ended once it did."""
    line = Text(no_wrap=True, overflow="ellipsis")
    if d.active and act is not None and act.events:
        line.append("▶ ", style="bold green")
        if d.harness:  # an event stream: what it does
            line.append(visible(act.doing or "working"), style="bold")
        else:  # plain text: only that it speaks
            line.append("output", style="bold")
        if act.last_event_at is not None:
            line.append(f" · {fmt_ago(now - act.last_event_at)}", style="dim")
        return line
    if d.active and act is not None and act.retries:
        line.append(f"… {visible(act.doing)}", style="yellow")
        return line
    if d.active:
        line.append("no agent output yet", style="dim")
    elif d.worktree_removed:
        line.append("■ worktree removed (branch kept)", style="dim")
    elif d.agent_error:
        line.append(f"■ the agent said: {visible(d.agent_error)}", style="grey70")
    return line


def numbers_line(d: Dispatch, act: Activity | None) -> Text:
    """``3 turns · in 12.3k out 1.2k · $0.0412 · 2 tool errors``: live while it runs, from
    its row once it ended (a resumed session has them too); ``≈`` marks an estimate."""
    line = Text(no_wrap=True, overflow="ellipsis", style="dim")
    if d.active and act is not None and act.events and d.harness and d.run == 1:
        line.append(act.counters())  # a later run's activity is its own: the row adds them
    elif d.turns is not None or d.cost_usd is not None:
        line.append(counters_text(d.turns, d.tokens_in, d.tokens_out,
                                  cost_of(d.cost_usd, d.model, d.tokens_in, d.tokens_out),
                                  d.tool_errors))
    if d.tool_errors:
        line.stylize("yellow", line.plain.rfind("·") + 1)
    return line


def fmt_ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s ago"
    return f"{fmt_duration(seconds)} ago"


def quiet_badge(quiet: Quiet | None) -> Text:
    if quiet is None:
        return Text()
    what = " (no output yet)" if quiet.first else ""
    return Text(f"  QUIET {fmt_quiet(quiet.seconds)}{what} ", style="bold black on yellow")


def fmt_quiet(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def card_lines(d: Dispatch, now: float, tail: list[str], act: Activity | None = None,
               quiet: Quiet | None = None) -> list[Text]:
    """The card's content, one Text per line (each cut to the card's width when drawn)."""
    label = d.label()
    if d.phase == "killing" and d.kill_deadline is not None:
        label = f"KILLING · SIGKILL in {max(0, int(d.kill_deadline - now + 0.999))}s"
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(visible(d.gap_id), style="bold")
    head.append(f" #{d.attempt}  ", style="dim")
    head.append(visible(d.title), style="italic")
    ident = Text(visible(d.branch), style="cyan", no_wrap=True, overflow="ellipsis")
    who = d.harness or d.backend or "-"
    ident.append(f"  pid {d.pid if d.pid is not None else '-'}  {visible(who)}", style="dim")
    if d.host:  # a fleet agent: the host that runs it
        ident.append(f"  @{visible(d.host)}", style="bold magenta")
    if d.note:  # e.g. "no claim script (scripts/gap-claim.sh); claim skipped"
        ident.append(f"  {visible(d.note)}", style="dim yellow")
    state = Text(no_wrap=True, overflow="ellipsis")
    state.append(f" {label} ", style=state_style(d.label()))
    state.append_text(quiet_badge(quiet))
    if d.run > 1:  # a follow-up or CI repair resumed its conversation
        state.append(f"  {visible(d.run_note)}", style="bold cyan")
    if d.budget_note:  # 80 % of its budget, or reached
        state.append(f"  {visible(d.budget_note.upper())} ",
                     style="bold white on red" if "reached" in d.budget_note
                     else "bold black on yellow")
    reason = d.reason()
    if reason and d.phase in ("ended", "spawn_failed", "killing", "dispatching"):
        state.append(f"  {visible(reason)}", style="grey70")
    elapsed = d.run_duration_s(now)  # a later run's deadlines count from its start
    timing = deadline_bar(elapsed, d.soft_deadline_s)
    timing.no_wrap = True
    timing.overflow = "ellipsis"
    timing.append(f" {fmt_duration(elapsed)} / {fmt_duration(d.soft_deadline_s)}"
                  f" / {fmt_duration(2 * d.soft_deadline_s)}", style="dim")
    if d.pr is not None:
        pr = Text(f"PR #{d.pr.number} {visible(d.pr.state)}", style="bold")
        if d.pr.merge_state_status.upper() == "DIRTY":
            pr.append("  DIRTY", style="bold yellow")
    else:
        pr = Text("no PR yet", style="dim")
    # The most telling lines first: a short terminal's cards show only the top ones.
    lines: list[Text] = [head, ident, state, activity_line(d, now, act), numbers_line(d, act),
                         timing, pr]
    for line in tail[-TAIL_LINES:]:
        lines.append(Text(f"› {visible(line)}", style="grey70", no_wrap=True, overflow="ellipsis"))
    lines += [Text("")] * (TAIL_LINES - min(TAIL_LINES, len(tail)))
    return lines


class DispatchCard(Widget):
    """One dispatch's card. Fixed size, so a redraw never asks for a new layout.

    Drawn line by line: a change repaints only the lines it changed (the tail and the clock
    change several times a second on every card; the name, branch and PR rarely), and each
    line is turned into a Strip once. Rendering whole cards through Rich was a third of the
    console's time in continuous mode.

    Selection is the monitor screen's state, not focus, so keys never race focus events.
    """

    @dataclass
    class Chosen(Message):
        key: str

    def __init__(self, key: str) -> None:
        super().__init__(classes="card")
        self.key = key
        self._state_class = ""
        self._last: tuple[object, ...] | None = None
        self._texts: list[Text] = []
        self._strips: dict[int, Strip] = {}  # line -> drawn at _strip_width, current CSS
        self._strip_width = -1
        self.tail: list[str] = []
        self.tail_version = 0
        self._failed = ""  # the exception type its last drawing failed with
        self._failure = ""

    def rebind(self, key: str) -> None:
        """Show another dispatch in this card (the monitor recycles cards of old attempts)."""
        self.key = key
        self._last = None
        self.tail, self.tail_version = [], 0
        self.remove_class("-selected")

    @property
    def drawn(self) -> bool:
        return self._last is not None

    def on_click(self, event: events.Click) -> None:
        self.post_message(self.Chosen(self.key))

    def show(self, d: Dispatch, now: float, tail: list[str], tail_version: int,
             act: Activity | None = None, quiet: Quiet | None = None) -> None:
        """Redraw only when something visible changed, and only the lines that did."""
        second = int(now) if d.active else 0
        signature = (d, second, tail_version, act.events if act else 0,
                     act.doing if act else "", int(quiet.seconds) if quiet else -1)
        if signature == self._last:
            return
        self._last = signature
        self.tail, self.tail_version = tail, tail_version
        css = f"-state-{state_class(d.label())}"
        if css != self._state_class:  # a class change re-applies CSS: only when it changes
            if self._state_class:
                self.remove_class(self._state_class)
            self.add_class(css)
            self._state_class = css
        lines = self._lines(d, now, tail, act, quiet)
        if len(lines) != len(self._texts):
            self._texts, self._strips = lines, {}
            self.refresh()
            return
        width = self.content_size.width
        for y, (old, new) in enumerate(zip(self._texts, lines, strict=True)):
            if _same_text(old, new):
                continue
            self._texts[y] = new
            self._strips.pop(y, None)
            self.refresh(Region(0, y, width, 1))

    def _lines(self, d: Dispatch, now: float, tail: list[str], act: Activity | None,
               quiet: Quiet | None) -> list[Text]:
        """The card's lines; a card that cannot be drawn says so (its traceback goes to the
        crash log once) and the other cards, the keys and the agents go on."""
        try:
            lines = card_lines(d, now, tail, act, quiet)
            self._failed = ""
            return lines
        except Exception as exc:
            if type(exc).__name__ != self._failed:
                self._failed = type(exc).__name__
                self._failure = draw_failure(f"the card of {d.key}", exc)
            return [Text(visible(d.key), style="bold"),
                    Text(visible(self._failure), style="bold red", no_wrap=True,
                         overflow="ellipsis"),
                    *[Text("")] * (CARD_LINES - 2)]

    def drawn_text(self) -> str:
        """The card's lines as drawn (without the border): what a person reads on it."""
        return "\n".join(self.render_line(y).text for y in range(len(self._texts)))

    def notify_style_update(self) -> None:
        """Its CSS changed (state, selection, theme): the drawn lines carry the old colours."""
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if width != self._strip_width:
            self._strips.clear()
            self._strip_width = width
        strip = self._strips.get(y)
        if strip is None:
            style = self.rich_style
            if y >= len(self._texts):
                return Strip.blank(width, style)
            text = self._texts[y].copy()
            text.truncate(width, overflow="ellipsis")
            if text.style and not text.spans:  # Text.render applies the base style only
                text.stylize(text.style)       # with spans (as a console render would)
            segments = list(text.render(self.app.console, end=""))
            strip = Strip(segments, text.cell_len).crop_extend(0, width, None).apply_style(style)
            self._strips[y] = strip
        return strip


def _same_text(a: Text, b: Text) -> bool:
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans
