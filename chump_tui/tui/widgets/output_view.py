"""The larger live output view that follows the selected card; appends only new lines."""

from __future__ import annotations

from textual.widgets import Log

MAX_VIEW_LINES = 2000
SWITCH_LINES = 200  # shown at once when the selection moves; older ones are in the log file


class OutputView(Log, can_focus=False):
    """Not focusable: the monitor's arrow keys move between cards (the wheel still scrolls)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_lines=MAX_VIEW_LINES, highlight=False, **kwargs)  # type: ignore[arg-type]
        self.shown_key: str | None = None
        self.shown_seen = 0

    def follow(self, key: str | None, lines_seen: int, tail: list[str]) -> None:
        """Show ``key``'s output; ``tail`` holds at least the lines not shown yet."""
        if key != self.shown_key:
            self.clear()
            self.shown_key = key
            self.border_title = f"output · {key}" if key else "output"
            if tail:
                self.write_lines(tail[-SWITCH_LINES:])
            self.shown_seen = lines_seen
            return
        new = lines_seen - self.shown_seen
        if new > 0:
            self.write_lines(tail[-new:])
            self.shown_seen = lines_seen
