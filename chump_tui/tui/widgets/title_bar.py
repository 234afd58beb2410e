"""The one-line bar at the top of every screen: an icon, the app's title and sub-title.

It draws what Textual's Header draws (icon in an 8-column cell, the title centred, the
sub-title dimmed after " — ") as one widget. Header is four widgets, each with its own
stylesheet and watchers; on the backlog screen it cost the first frame about 25 ms.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual.widget import Widget

ICON = "◆"
ICON_CELL = 8  # as Header's icon: the title is centred between two cells this wide


class TitleBar(Widget):
    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        width: 100%;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "title", self._changed, init=False)
        self.watch(self.app, "sub_title", self._changed, init=False)

    def _changed(self, _value: str) -> None:
        self.refresh()

    def render(self) -> Text:
        width = self.size.width
        title, sub_title = self.app.title, self.app.sub_title
        room = max(0, width - 2 * ICON_CELL)
        shown = title + (f" — {sub_title}" if sub_title else "")
        if cell_len(shown) > room:
            shown = set_cell_size(shown, max(0, room - 1)) + "…" if room else ""
        pad = (room - cell_len(shown)) // 2
        # Icon and padding as one bold run, so an SVG export places the title by its column.
        line = Text(no_wrap=True)
        line.append(set_cell_size(f" {ICON}", ICON_CELL + pad), style="bold")
        line.append(shown[:len(title)])
        line.append(shown[len(title):], style="dim")
        return line
