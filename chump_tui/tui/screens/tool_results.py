"""Every tool an attempt called and what it returned (``t`` on the monitor): a list, newest
at the bottom, and the whole result of the one under the cursor on Enter."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from chump_tui.dispatch_record import Dispatch
from chump_tui.harness import stream_format
from chump_tui.log_lines import human_bytes
from chump_tui.tool_results import ToolResult, tool_results
from chump_tui.tui.screens.text_view import TextView
from chump_tui.tui.text import line


class ToolResultsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close"),
                Binding("enter", "open", "Whole result", show=False)]

    def __init__(self, dispatch: Dispatch) -> None:
        super().__init__()
        self.dispatch = dispatch
        self.results: list[ToolResult] = []

    def compose(self) -> ComposeResult:
        d = self.dispatch
        with Vertical(id="dialog", classes="wide"):
            yield Static(line(f"tool results · {d.gap_id} #{d.attempt}", "bold"),
                         id="dialog-title")
            yield DataTable(id="tools", cursor_type="row", zebra_stripes=True)
            yield Static(Text("enter: the whole result   esc: close", style="dim"),
                         id="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "tool", "argument", "result", "size")
        table.loading = True
        self._load()

    @work(thread=True, group="tool-results", exit_on_error=False)
    def _load(self) -> None:
        path = Path(self.dispatch.log_path)
        results = tool_results(path, stream_format(self.dispatch.harness))
        self.app.call_from_thread(self._show, results)

    def _show(self, results: list[ToolResult]) -> None:
        self.results = results
        table = self.query_one(DataTable)
        table.loading = False
        for n, result in enumerate(results, 1):
            verdict = (Text("running", style="dim") if result.ok is None else
                       Text("✓", style="green") if result.ok else Text("✗ error", style="red"))
            table.add_row(str(n), line(result.name), line(result.arg[:80]), verdict,
                          human_bytes(result.size) if result.ok is not None else "-")
        if results:
            table.move_cursor(row=len(results) - 1)
        else:
            table.add_row("", line("no tool calls in this attempt's log"), "", "", "")
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if not self.results or table.cursor_row >= len(self.results):
            return
        result = self.results[table.cursor_row]
        self.app.push_screen(TextView(f"{result.name}  {result.arg}",
                                      result.body(Path(self.dispatch.log_path))))

    def action_close(self) -> None:
        self.dismiss(None)
