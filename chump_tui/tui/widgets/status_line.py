"""The monitor's status line: counts, time to the next GitHub poll, errors, pending writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from textual.widgets import Static

from chump_tui.dispatch_record import Dispatch


def status_text(dispatches: Iterable[Dispatch], next_poll_s: float, github_error: str | None,
                continuous: bool, pending_reflections: int, dry_run: bool) -> str:
    rows = list(dispatches)
    running = sum(1 for d in rows if d.active)
    ended = Counter(d.label() for d in rows if not d.active)
    parts = [f"[b]{running}[/b] running", f"[b]{sum(ended.values())}[/b] ended"]
    if ended:
        parts.append(" ".join(f"{k.lower()} {v}" for k, v in sorted(ended.items())))
    if running:
        parts.append(f"next GitHub poll in {int(next_poll_s + 0.999)}s")
    parts.append(f"continuous [b]{'ON' if continuous else 'off'}[/b]")
    if pending_reflections:
        parts.append(f"[yellow]{pending_reflections} reflection(s) pending[/]")
    if dry_run:
        parts.append("[reverse] DRY-RUN [/]")
    if github_error:
        parts.append(f"[red]GitHub: {github_error}[/]")
    return "  ·  ".join(parts)


class StatusLine(Static):
    _text = ""

    def set_text(self, text: str) -> None:
        if text != self._text:
            self._text = text
            # One line high by CSS: a layout pass here would re-arrange every card.
            self.update(text, layout=False)
