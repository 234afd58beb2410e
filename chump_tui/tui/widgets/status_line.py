"""The monitor's status line: counts, time to the next GitHub poll, errors, pending writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from chump_tui.activity import dollars
from chump_tui.dispatch_record import Dispatch
from chump_tui.summary_export import fleet_cost
from chump_tui.tui.text import assemble, line


def status_text(dispatches: Iterable[Dispatch], next_poll_s: float, github_error: str | None,
                continuous: bool, pending_reflections: int, dry_run: bool,
                hidden: int = 0) -> Text:
    rows = list(dispatches)
    exited = sum(1 for d in rows if d.active and d.waiting_for_pr)
    running = sum(1 for d in rows if d.active) - exited
    ended = Counter("exited" if d.label().startswith("EXITED") else d.label().lower()
                    for d in rows if not d.active)
    parts: list[Text] = [assemble((str(running), "bold"), " running")]
    if exited:
        parts.append(assemble((str(exited), "bold"), " exited, waiting for a PR"))
    parts.append(assemble((str(sum(ended.values())), "bold"), " ended"))
    if ended:
        parts.append(Text(" ".join(f"{k} {v}" for k, v in sorted(ended.items()))))
    if hidden:
        parts.append(Text(f"{hidden} older in the summary (s)", style="dim"))
    if running or exited:
        parts.append(Text(f"next GitHub poll in {int(next_poll_s + 0.999)}s"))
    parts.append(assemble("continuous ", ("ON" if continuous else "off", "bold")))
    spent = fleet_cost(rows)
    if spent is not None:
        parts.append(assemble(("spent ", ""), (dollars(spent), "bold")))
    if pending_reflections:
        parts.append(Text(f"{pending_reflections} reflection(s) pending", style="yellow"))
    if dry_run:
        parts.append(Text(" DRY-RUN ", style="reverse"))
    if github_error:
        parts.append(line(f"GitHub: {github_error}", "red"))
    return Text(" · ").join(parts)


class StatusLine(Static):
    _text = Text()

    def set_text(self, text: Text) -> None:
        if text != self._text:
            self._text = text
            # One line high by CSS: a layout pass here would re-arrange every card.
            self.update(text, layout=False)
