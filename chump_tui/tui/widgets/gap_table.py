"""The backlog list: one line per gap, drawn with Textual's line API.

Only the rows on screen are ever rendered, so filtering or searching a 10,000-gap
backlog costs the same as a 50-gap one (Textual's DataTable measures and renders
every cell it holds, which on such a backlog takes seconds per keystroke).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from chump_tui.backlog import Gap
from chump_tui.outside_text import visible

Columns = tuple[tuple[str, int], ...]  # (label, width); width 0: the rest of the line

# What matters first at any width: id, state, why not, title (80 columns keeps those).
NARROW: Columns = ((" ", 1), ("id", 12), ("pri", 3), ("status", 7),
                   ("pickable / why not", 22), ("title", 0))
NORMAL: Columns = ((" ", 1), ("id", 14), ("pri", 3), ("eff", 3), ("status", 7), ("deps", 5),
                   ("pickable / why not", 24), ("title", 0))
WIDE: Columns = ((" ", 1), ("id", 16), ("pri", 3), ("eff", 3), ("status", 7), ("deps", 5),
                 ("pickable / why not", 38), ("title", 0))

Row = tuple[Gap, str, str | None, bool]


def columns_for(width: int) -> Columns:
    return NARROW if width < 90 else WIDE if width >= 150 else NORMAL


def header_text(columns: Columns = NORMAL) -> Text:
    return Text(" ".join(label.ljust(width) if width else label for label, width in columns))


_MARK = Style(color="magenta", bold=True)
_PICK_STYLES = {"ok": Style(color="green", bold=True), "dispatched": Style(color="cyan"),
                "needs": Style(color="yellow"), "other": Style(dim=True)}


def _fit(value: str, width: int) -> str:
    if cell_len(value) > width:
        return set_cell_size(value, width - 1) + "…"
    return set_cell_size(value, width)


def row_cells(row: Row, columns: Columns = NORMAL) -> list[tuple[str, Style | None]]:
    """The row as (text, style) runs, each padded to its column: no Rich layout per line."""
    gap, deps, reason, selected = row
    if reason is None:
        pick, pick_style = "✓ pickable", _PICK_STYLES["ok"]
    else:
        pick = reason
        kind = ("dispatched" if reason.startswith("dispatched")
                else "needs" if reason.startswith("needs") else "other")
        pick_style = _PICK_STYLES[kind]
    values: dict[str, tuple[str, Style | None]] = {
        " ": ("●" if selected else " ", _MARK), "id": (visible(gap.id), None),
        "pri": (visible(gap.priority), None), "eff": (visible(gap.effort), None),
        "status": (visible(gap.status), None), "deps": (deps, None),
        "pickable / why not": (visible(pick), pick_style), "title": (visible(gap.title), None)}
    runs = []
    for label, width in columns:
        value, style = values[label]
        runs.append((_fit(value, width) + " " if width else value, style))
    return runs


class GapTable(ScrollView, can_focus=True):
    """Cursor, zebra stripes, click to highlight; ``show`` replaces the rows."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]
    COMPONENT_CLASSES = {"gap-table--cursor", "gap-table--even"}
    DEFAULT_CSS = """
    GapTable > .gap-table--cursor { background: $accent; color: $text; text-style: bold; }
    GapTable > .gap-table--even { background: $boost; }
    """

    cursor_row: reactive[int] = reactive(0)

    @dataclass
    class Highlighted(Message):
        gap_id: str | None

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rows: list[Row] = []
        self._index: dict[str, int] = {}
        self.generation = 0
        # Set with the header above it (the backlog screen does both at once): the rows
        # and their header always agree, also in a first frame drawn before a resize.
        self.columns: Columns = NORMAL

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def show(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        same = len(rows) == len(self._rows) and all(
            a[0].id == b[0].id for a, b in zip(rows, self._rows, strict=True))
        previous = self.highlighted_id()
        self._rows = rows
        if not same:
            self._index = {row[0].id: i for i, row in enumerate(rows)}
            self.generation += 1
            self.virtual_size = Size(self.size.width, len(rows))
            target = self._index.get(previous, 0) if previous else 0
            self.cursor_row = min(target, max(0, len(rows) - 1))
            self.post_message(self.Highlighted(self.highlighted_id()))
        self.refresh()

    def set_marks(self, gap_id: str, selected: bool, reason: str | None) -> None:
        index = self._index.get(gap_id)
        if index is None:
            return
        gap, deps, _reason, _selected = self._rows[index]
        self._rows[index] = (gap, deps, reason, selected)
        self.refresh_line(index)

    def highlighted_id(self) -> str | None:
        if 0 <= self.cursor_row < len(self._rows):
            return self._rows[self.cursor_row][0].id
        return None

    def refresh_line(self, index: int) -> None:
        y = index - int(self.scroll_offset.y)
        if 0 <= y < self.size.height:
            self.refresh_lines(y)

    def render_line(self, y: int) -> Strip:
        index = y + int(self.scroll_offset.y)
        width = self.size.width
        if index >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        base = self.rich_style
        cursor = index == self.cursor_row
        if cursor:  # one colour for the whole cursor row: column colours clash with it
            base += self.get_component_rich_style("gap-table--cursor")
        elif index % 2:
            base += self.get_component_rich_style("gap-table--even")
        segments = [Segment(text, base + style if style and not cursor else base)
                    for text, style in row_cells(self._rows[index], self.columns)]
        return Strip(segments).crop_extend(0, width, base)

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh_line(old)
        self.refresh_line(new)
        top = int(self.scroll_offset.y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + self.size.height:
            self.scroll_to(y=new - self.size.height + 1, animate=False)
        self.post_message(self.Highlighted(self.highlighted_id()))

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self._rows))

    def on_click(self, event: events.Click) -> None:
        index = event.y + int(self.scroll_offset.y)
        if 0 <= index < len(self._rows):
            self.cursor_row = index

    def _move(self, step: int) -> None:
        if self._rows:
            self.cursor_row = max(0, min(len(self._rows) - 1, self.cursor_row + step))

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-max(1, self.size.height - 1))

    def action_page_down(self) -> None:
        self._move(max(1, self.size.height - 1))

    def action_first(self) -> None:
        self._move(-len(self._rows))

    def action_last(self) -> None:
        self._move(len(self._rows))
