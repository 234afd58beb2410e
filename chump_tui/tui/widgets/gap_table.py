"""The backlog table: one row per gap, keyed by gap id, selection marks updated in place.

Textual's DataTable measures every cell it is given, so a big result is filled
progressively: the first screenful at once (that is what the next frame shows),
the rest in batches on later event-loop turns. A newer ``show`` cancels an older
fill, so typing in the search box never waits for a 10,000-row table.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from chump_tui.backlog import Gap

PICK_WIDTH = 30
FIRST_PAGE = 80
BATCH = 250
# Fixed widths: auto-width columns would grow with every measured cell.
COLUMNS = (("sel", " ", 1), ("id", "id", 16), ("pri", "pri", 3), ("effort", "eff", 3),
           ("status", "status", 8), ("deps", "deps", 5), ("pick", "pickable / why not", PICK_WIDTH),
           ("title", "title", 90))

Row = tuple[Gap, str, str | None, bool]


def pick_cell(reason: str | None) -> Text:
    if reason is None:
        return Text("✓ pickable", style="bold green")
    if reason.startswith("dispatched"):
        text = Text(reason, style="cyan")
    else:
        text = Text(reason, style="yellow" if reason.startswith("needs") else "dim")
    text.truncate(PICK_WIDTH, overflow="ellipsis")
    return text


def _cells(row: Row) -> list[Text]:
    gap, deps, reason, selected = row
    # Text, not str: a str cell is parsed as console markup on every measure.
    return [_mark(selected), Text(gap.id), Text(gap.priority), Text(gap.effort),
            Text(gap.status), Text(deps), pick_cell(reason), Text(gap.title)]


def _mark(selected: bool) -> Text:
    return Text("●", style="bold magenta") if selected else Text(" ")


class GapTable(DataTable[Text]):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._shown: list[str] = []
        self._pick_cells: dict[str, str | None] = {}
        self._pending: list[Row] = []
        self._generation = 0

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, rows: Iterable[Row]) -> None:
        """Replace the rows: (gap, deps 'met/total', reason or None, selected)."""
        rows = list(rows)
        ids = [gap.id for gap, *_ in rows]
        if ids == self._shown:
            for gap, _deps, reason, selected in rows:
                self.set_marks(gap.id, selected, reason)
            return
        self._generation += 1
        self.clear()
        self._shown = ids
        self._pick_cells = {gap.id: reason for gap, _d, reason, _s in rows}
        self._add(rows[:FIRST_PAGE])
        self._pending = rows[FIRST_PAGE:]
        if self._pending:
            self.call_after_refresh(self._fill_more, self._generation)

    @property
    def filling(self) -> bool:
        return bool(self._pending)

    def _add(self, rows: list[Row]) -> None:
        for row in rows:
            self.add_row(*_cells(row), key=row[0].id)

    def _fill_more(self, generation: int) -> None:
        if generation != self._generation:
            return  # a newer show() replaced this fill
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        self._add(batch)
        if self._pending:
            self.call_after_refresh(self._fill_more, generation)

    def set_marks(self, gap_id: str, selected: bool, reason: str | None) -> None:
        """Update only the cells that changed for one row."""
        if gap_id not in self.rows:
            self._pending = [(g, d, reason if g.id == gap_id else r, selected if g.id == gap_id
                              else s) for g, d, r, s in self._pending]
            return
        if self.get_cell(gap_id, "sel").plain != _mark(selected).plain:
            self.update_cell(gap_id, "sel", _mark(selected))
        if self._pick_cells.get(gap_id, "") != reason:
            self._pick_cells[gap_id] = reason
            self.update_cell(gap_id, "pick", pick_cell(reason))

    def highlighted_id(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]
