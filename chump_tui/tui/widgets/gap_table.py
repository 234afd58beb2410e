"""The backlog table: one row per gap, keyed by gap id, selection marks updated in place."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from chump_tui.backlog import Gap

PICK_WIDTH = 30
COLUMNS = (("sel", " "), ("id", "id"), ("pri", "pri"), ("effort", "eff"), ("status", "status"),
           ("deps", "deps"), ("pick", "pickable / why not"), ("title", "title"))


def pick_cell(reason: str | None) -> Text:
    if reason is None:
        return Text("✓ pickable", style="bold green")
    if reason.startswith("dispatched"):
        text = Text(reason, style="cyan")
    else:
        text = Text(reason, style="yellow" if reason.startswith("needs") else "dim")
    text.truncate(PICK_WIDTH, overflow="ellipsis")
    return text


class GapTable(DataTable[object]):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._shown: list[str] = []
        self._pick_cells: dict[str, str | None] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            # The reason column is capped so the title stays on screen; the detail
            # pane shows the whole reason.
            self.add_column(label, key=key, width=PICK_WIDTH if key == "pick" else None)

    def show(self, rows: Iterable[tuple[Gap, str, str | None, bool]]) -> None:
        """Replace the rows: (gap, deps 'met/total', reason or None, selected)."""
        rows = list(rows)
        ids = [gap.id for gap, *_ in rows]
        if ids == self._shown:
            for gap, _deps, reason, selected in rows:
                self.set_marks(gap.id, selected, reason)
            return
        self.clear()
        self._shown = ids
        self._pick_cells = {}
        for gap, deps, reason, selected in rows:
            self.add_row(self._mark(selected), gap.id, gap.priority, gap.effort, gap.status, deps,
                         pick_cell(reason), gap.title, key=gap.id)
            self._pick_cells[gap.id] = reason

    def set_marks(self, gap_id: str, selected: bool, reason: str | None) -> None:
        """Update only the cells that changed for one row."""
        if gap_id not in self.rows:
            return
        current = self.get_cell(gap_id, "sel")
        if str(current) != str(self._mark(selected)):
            self.update_cell(gap_id, "sel", self._mark(selected))
        if self._pick_cells.get(gap_id, "") != reason:
            self._pick_cells[gap_id] = reason
            self.update_cell(gap_id, "pick", pick_cell(reason))

    @staticmethod
    def _mark(selected: bool) -> Text:
        return Text("●", style="bold magenta") if selected else Text(" ")

    def highlighted_id(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]
