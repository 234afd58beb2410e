"""The monitor's status line: counts, time to the next GitHub poll, errors, pending writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from chump_tui.pricing import Cost, cost_of
from chump_tui.tui.text import assemble, line

if TYPE_CHECKING:  # the app holds a tally from start-up; the records come with the engine
    from chump_tui.dispatch_record import Dispatch


RUNNING = "running"  # active kinds, counted apart from the ended labels (lower case)
WAITING = "waiting for a PR"
QUEUED = "waiting for a host"  # a fleet dispatch no host has taken yet


def _kind(d: Dispatch) -> tuple[bool, str]:
    """(active, kind): an active row runs or waits for its PR; an ended one counts by label."""
    if d.active:
        if d.phase == "dispatching" and d.waiting:
            return True, QUEUED
        return True, WAITING if d.waiting_for_pr else RUNNING
    return False, "exited" if d.label().startswith("EXITED") else d.label().lower()


class StatusTally:
    """The counts the status line shows, kept up to date one row at a time: after hours of
    continuous mode there are thousands of attempts, and counting them all on every change
    was work that grew with the session."""

    def __init__(self) -> None:
        # key -> kind, its cost (reported, else estimated), whether estimated
        self._rows: dict[str, tuple[tuple[bool, str], float | None, bool]] = {}
        self.counts: Counter[tuple[bool, str]] = Counter()
        self.spent_usd = 0.0
        self.costed = 0  # rows with a cost
        self.estimated = 0  # of those, rows whose cost is an estimate

    @classmethod
    def of(cls, dispatches: Iterable[Dispatch]) -> StatusTally:
        tally = cls()
        for d in dispatches:
            tally.update(d)
        return tally

    def update(self, d: Dispatch) -> None:
        old = self._rows.get(d.key)
        if old is not None:
            self.counts[old[0]] -= 1
            if old[1] is not None:
                self.spent_usd -= old[1]
                self.costed -= 1
                self.estimated -= old[2]
        kind = _kind(d)
        cost = cost_of(d.cost_usd, d.model, d.tokens_in, d.tokens_out)
        self._rows[d.key] = (kind, cost.usd, cost.estimated)
        self.counts[kind] += 1
        if cost.usd is not None:
            self.spent_usd += cost.usd
            self.costed += 1
            self.estimated += cost.estimated

    def running(self) -> int:
        return self.counts[True, RUNNING]

    def waiting(self) -> int:
        return self.counts[True, WAITING]

    def waiting_for_a_host(self) -> int:
        return self.counts[True, QUEUED]

    def active(self) -> int:
        return self.running() + self.waiting() + self.waiting_for_a_host()

    def ended(self) -> dict[str, int]:
        return {kind: n for (active, kind), n in self.counts.items() if n and not active}

    def spent(self) -> Cost | None:
        return Cost(self.spent_usd, self.estimated > 0) if self.costed else None


def status_text(tally: StatusTally, next_poll_s: float, github_error: str | None,
                continuous: bool, pending_reflections: int, dry_run: bool,
                hidden: int = 0, queued: list[str] | None = None,
                alerts: list[str] | None = None) -> Text:
    """``alerts``: what stops work or notifications (the session's budget spent, a webhook
    that fails), shown last in red."""
    waiting, running = tally.waiting(), tally.running()
    ended = tally.ended()
    parts: list[Text] = [assemble((str(running), "bold"), " running")]
    if queued:
        shown = ", ".join(queued[:3]) + (f" +{len(queued) - 3}" if len(queued) > 3 else "")
        parts.append(assemble((str(len(queued)), "bold yellow"), (f" queued ({shown})",
                                                                   "yellow")))
    if tally.waiting_for_a_host():
        parts.append(assemble((str(tally.waiting_for_a_host()), "bold yellow"),
                              (" waiting for a host", "yellow")))
    if waiting:
        parts.append(assemble((str(waiting), "bold"), " exited, waiting for a PR"))
    parts.append(assemble((str(sum(ended.values())), "bold"), " ended"))
    if ended:
        parts.append(Text(" ".join(f"{k} {v}" for k, v in sorted(ended.items()))))
    if hidden:
        parts.append(Text(f"{hidden} older in the summary (s)", style="dim"))
    if running or waiting:
        parts.append(Text(f"next GitHub poll in {int(next_poll_s + 0.999)}s"))
    parts.append(assemble("continuous ", ("ON" if continuous else "off", "bold")))
    spent = tally.spent()
    if spent is not None:
        parts.append(assemble(("spent ", ""), (spent.text(), "bold")))
    if pending_reflections:
        parts.append(Text(f"{pending_reflections} reflection(s) pending", style="yellow"))
    if dry_run:
        parts.append(Text(" DRY-RUN ", style="reverse"))
    if github_error:
        parts.append(line(f"GitHub: {github_error}", "red"))
    for alert in alerts or []:
        parts.append(line(alert, "bold red"))
    return Text(" · ").join(parts)


class StatusLine(Static):
    _text = Text()

    def set_text(self, text: Text) -> None:
        if text != self._text:
            self._text = text
            # One line high by CSS: a layout pass here would re-arrange every card.
            self.update(text, layout=False)
