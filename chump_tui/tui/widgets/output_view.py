"""The larger live output view that follows the selected card; appends only new lines.

Drawn with Textual's line API from a bounded deque, with no scrollable virtual size:
Textual's Log changes its virtual size on every write, and each change asks the
screen for a full layout, which with a hundred cards on the monitor cost 25-150 ms
ten times a second under a flood. Here a write only repaints this widget. The mouse
wheel scrolls back through the last MAX_VIEW_LINES; the view then stays put while
new lines arrive, until the wheel brings it back to the end.
"""

from __future__ import annotations

from collections import deque

from rich.cells import cell_len
from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.strip import Strip
from textual.widget import Widget

from chump_tui.outside_text import visible

MAX_VIEW_LINES = 2000
SWITCH_LINES = 200  # shown at once when the selection moves; older ones are in the log file
WHEEL_LINES = 3



def printable(line: str) -> str:
    """Tabs expanded, other control characters (escape sequences included) made visible."""
    return visible(line.expandtabs() if "\t" in line else line)


class OutputView(Widget, can_focus=True):
    """Focus it with Tab: PageUp/PageDown/Home scroll back, End follows the tail again (the
    monitor's arrow keys keep selecting cards; the wheel scrolls too)."""

    BINDINGS = [
        Binding("pageup", "page(1)", "Page up", show=False),
        Binding("pagedown", "page(-1)", "Page down", show=False),
        Binding("home", "oldest", "Oldest line", show=False),
        Binding("end", "follow", "Follow the tail", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._lines: deque[str] = deque(maxlen=MAX_VIEW_LINES)
        self.back = 0
        """Lines scrolled back from the end; 0 follows new output."""
        self.shown_key: str | None = None
        self.shown_seen = 0

    def follow(self, key: str | None, lines_seen: int, tail: list[str]) -> None:
        """Show ``key``'s output; ``tail`` holds at least the lines not shown yet."""
        if key != self.shown_key:
            self._lines.clear()
            self.back = 0
            self.shown_key = key
            self.border_title = Text(visible(f"output · {key}" if key else "output"))
            self._lines.extend(printable(line) for line in tail[-SWITCH_LINES:])
        else:
            new = min(lines_seen - self.shown_seen, len(tail))
            if new <= 0:
                return
            self._lines.extend(printable(line) for line in tail[-new:])
            if self.back:  # scrolled back: keep the same lines on screen
                self._set_back(self.back + new)
        self.shown_seen = lines_seen
        self.refresh()

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    def _set_back(self, back: int) -> None:
        most = max(0, len(self._lines) - self.size.height)
        self.back = max(0, min(back, most))
        self.border_subtitle = (f"↑ {self.back} line(s) back · End follows again"
                                if self.back else "")

    def action_page(self, pages: int) -> None:
        self._set_back(self.back + pages * max(1, self.size.height - 1))
        self.refresh()

    def action_oldest(self) -> None:
        self._set_back(len(self._lines))
        self.refresh()

    def action_follow(self) -> None:
        self._set_back(0)
        self.refresh()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._set_back(self.back + WHEEL_LINES)
        self.refresh()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._set_back(self.back - WHEEL_LINES)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        style = self.rich_style
        end = len(self._lines) - self.back
        index = max(0, end - height) + y
        if index >= end:
            return Strip.blank(width, style)
        text = self._lines[index]
        return Strip([Segment(text, style)], cell_len(text)).crop_extend(0, width, style)
