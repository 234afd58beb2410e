"""Summary screen: one row per dispatch attempt, the reference's totals line, export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from chump_tui.dispatch_record import fmt_duration
from chump_tui.summary_export import (
    attempt_cost,
    cost_line,
    export_summary,
    killed_note,
    runs_cell,
    runs_line,
    summary_rows,
    totals_line,
)
from chump_tui.tui.footer_keys import FIRST_KEYS
from chump_tui.tui.text import assemble, line
from chump_tui.tui.widgets.dispatch_card import state_style
from chump_tui.tui.widgets.title_bar import TitleBar

if TYPE_CHECKING:
    from chump_tui.tui.app import ChumpApp

COLUMNS = (("gap", "gap"), ("attempt", "#"), ("branch", "branch"), ("outcome", "outcome"),
           ("pr", "PR"), ("duration", "duration"), ("turns", "turns"),
           ("errors", "tool errors"), ("runs", "follow-ups / CI"), ("cost", "cost"),
           ("reason", "reason"))


class SummaryScreen(Screen[None]):
    BINDINGS = [*FIRST_KEYS, Binding("e", "export", "Export JSON+MD")]

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self._seen_version = -1

    @property
    def chump(self) -> ChumpApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("Nothing dispatched yet: the summary lists every attempt once there is "
                     "one. Go to the backlog (b) to dispatch.", id="summary-empty")
        yield DataTable(id="summary", cursor_type="row", zebra_stripes=True)
        yield Static(id="totals")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.refresh_view(set())
        self.ready = True

    def refresh_view(self, dirty_output: set[str]) -> None:
        app = self.chump
        if app.version == self._seen_version:
            return
        self._seen_version = app.version
        table = self.query_one(DataTable)
        empty = not app.dispatches
        self.query_one("#summary-empty").display = empty
        table.display = not empty
        self.refresh_bindings()  # e (export) is offered once there is something to export
        now = app.setup.clock()
        with app.batch_update():
            for row, d in zip(summary_rows(app.dispatches.values(), now),
                              app.dispatches.values(), strict=True):
                cells: dict[str, Text] = {
                    "gap": line(row["gap"]), "attempt": Text(str(row["attempt"])),
                    # A fleet attempt says where it ran.
                    "branch": line(f"{row['branch']} @{d.host}" if d.host else row["branch"]),
                    "outcome": Text(f" {row['outcome']} ", style=state_style(str(row["outcome"]))),
                    "pr": Text(f"#{row['pr']}" if row["pr"] else "-"),
                    "duration": Text(fmt_duration(float(str(row["duration_s"])))),
                    "turns": Text(str(d.turns) if d.turns is not None else "-"),
                    "errors": Text(str(d.tool_errors) if d.tool_errors else "-",
                                   style="yellow" if d.tool_errors else ""),
                    "runs": Text(runs_cell(d)),
                    "cost": Text(attempt_cost(d).text()),
                    "reason": line(row["reason"]),
                }
                key = str(row["key"])
                if key in table.rows:
                    for column, value in cells.items():
                        if str(table.get_cell(key, column)) != str(value):
                            table.update_cell(key, column, value)
                else:
                    table.add_row(*cells.values(), key=key)
        pending = app.engine.reflections.pending()
        where = app.setup.reflections_where()
        costs = cost_line(app.dispatches.values())
        runs = runs_line(app.dispatches.values())
        note = killed_note(app.dispatches.values())
        self.query_one("#totals", Static).update(Text("\n").join([
            Text(totals_line(app.dispatches.values()), style="bold"),
            *([Text(f"({note})", style="dim")] if note else []),
            *([Text(costs, style="bold")] if costs else []),
            *([Text(runs)] if runs else []),
            assemble("reflections: ", where,
                     (f"  ({pending} pending)" if pending else "", "yellow")),
            Text("e exports JSON + Markdown next to the reflections DB", style="dim")]))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export" and not self.chump.dispatches:
            return None  # shown dimmed: nothing to export yet
        return True

    def action_export(self) -> None:
        self._export()

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self) -> None:
        app = self.chump
        try:
            paths = export_summary(list(app.dispatches.values()), app.setup.export_dir,
                                   app.setup.clock(), app.setup.reflections_where())
            message = "exported " + " and ".join(str(p) for p in paths)
            severity = "information"
        except OSError as exc:
            message, severity = f"export failed: {exc}", "error"
        self.app.call_from_thread(self.notify, message, severity=severity, timeout=10)
