"""Backlog screen: the gap table, filter and search, detail pane, selection and dispatch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from chump_tui.backlog import Gap
from chump_tui.outside_text import visible
from chump_tui.tui.footer_keys import FIRST_KEYS, refuse_watch_only_key
from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch, DispatchPlan
from chump_tui.tui.text import assemble
from chump_tui.tui.widgets.gap_detail import GapDetail
from chump_tui.tui.widgets.gap_table import GapTable, columns_for, header_text
from chump_tui.tui.widgets.title_bar import TitleBar

if TYPE_CHECKING:
    from chump_tui.tui.app import ChumpApp

Filter = Literal["all", "pickable", "open"]
NEXT_FILTER: dict[Filter, Filter] = {"all": "pickable", "pickable": "open", "open": "all"}


# What a read-only view does not offer (hidden; the key says why).
WATCH_ONLY_HIDES = ("toggle_select", "auto_pick", "dispatch")


class BacklogScreen(Screen[None]):
    BINDINGS = [
        *FIRST_KEYS,
        Binding("space", "toggle_select", "Select"),
        Binding("a", "auto_pick", "Auto-pick"),
        Binding("d", "dispatch", "Dispatch"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("slash", "search", "Search"),
        Binding("escape", "clear_search", "Clear search", show=False),
        Binding("w", "warnings", "Warnings", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.filter: Filter = "all"
        self.query_text = ""
        self.selected: list[str] = []
        self._seen_version = -1
        self._pickable = 0
        self._facts_version = -1
        self._detail_shown: tuple[str | None, int] | None = None
        self._facts_cache: list[tuple[Gap, str, str | None, str]] = []

    @property
    def chump(self) -> ChumpApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static(id="backlog-bar")
        yield Input(placeholder="search id or title (Enter to keep, Esc to clear)", id="search")
        with Horizontal(id="backlog-body"):
            with Vertical(id="gaps-pane"):
                yield Static(header_text(), id="gaps-header")
                yield GapTable(id="gaps")
            yield GapDetail(id="detail")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A read-only view (another console holds the session) offers no dispatching."""
        return not (self.chump.setup.read_only and action in WATCH_ONLY_HIDES)

    def on_key(self, event: events.Key) -> None:
        refuse_watch_only_key(self.chump, self.BINDINGS, WATCH_ONLY_HIDES, event)

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._fit_to_width)

    def _fit_to_width(self) -> None:
        table = self.query_one(GapTable)
        columns = columns_for(table.size.width)
        if columns != table.columns:
            table.columns = columns
            table.refresh()
        self.query_one("#gaps-header", Static).update(header_text(columns))
        self.update_bar(table.row_count)

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.query_one(GapTable).focus()
        self.rebuild()
        self.ready = True

    # --------------------------------------------------------------- content
    def _facts(self) -> list[tuple[Gap, str, str | None, str]]:
        """Per gap: deps 'met/total', reason or None, lowercased id+title for search.

        Recomputed only when the dispatch table changes, not on every keystroke.
        """
        if self._facts_version != self.chump.version:
            done = self.chump.done_now()
            facts = []
            for gap in self.chump.setup.backlog.gaps:
                met = sum(1 for d in gap.depends_on if d in done)
                deps = f"{met}/{len(gap.depends_on)}" if gap.depends_on else "-"
                facts.append((gap, deps, self.chump.gap_reason(gap, done),
                              f"{gap.id}\n{gap.title}".lower()))
            self._facts_cache = facts
            self._facts_version = self.chump.version
        return self._facts_cache

    def visible_gaps(self) -> tuple[list[tuple[Gap, str, str | None, bool]], int]:
        """The rows the filter and search let through, and how many gaps are pickable."""
        needle = self.query_text.lower()
        selected = set(self.selected)
        rows = []
        pickable = 0
        for gap, deps, reason, haystack in self._facts():
            pickable += reason is None
            if self.filter == "pickable" and reason is not None:
                continue
            if self.filter == "open" and gap.status != "open":
                continue
            if needle and needle not in haystack:
                continue
            rows.append((gap, deps, reason, gap.id in selected))
        return rows, pickable

    def rebuild(self) -> None:
        rows, self._pickable = self.visible_gaps()
        self.query_one(GapTable).show(rows)
        self._seen_version = self.chump.version
        self.update_bar(len(rows))
        self.update_detail()

    def update_bar(self, shown: int) -> None:
        setup = self.chump.setup
        warnings = len(setup.backlog.warnings)
        # Pieces by what matters most when the line is short (80 columns): the mode and
        # the selection first, the backlog's path last.
        pieces: list[tuple[int, Text]] = [
            (0, assemble((f" {setup.mode_label} ", "reverse"))),
            (1, assemble("selected ", (str(len(self.selected)), "bold magenta"))),
            (2, assemble(f"{len(setup.backlog.gaps)} gaps, {self._pickable} pickable")),
            (3, assemble("filter ", (self.filter, "bold"), f" ({shown})")),
            (4, assemble(f'search "{self.query_text}"') if self.query_text else Text()),
            (5, assemble(f"⚠ {warnings} warning(s) (w)") if warnings else Text()),
            (6, assemble(f"max-parallel {setup.max_parallel}")),
            (7, assemble((str(setup.backlog.path), "bold"))),
        ]
        room = max(20, self.size.width - 2)
        kept = [p for p in pieces if p[1].plain]
        while len(kept) > 1 and sum(p[1].cell_len + 3 for p in kept) > room:
            kept.remove(max(kept, key=lambda p: p[0]))
        order = [7, 2, 3, 4, 1, 6, 0, 5]  # the order they read in, left to right
        kept.sort(key=lambda p: order.index(p[0]))
        text = Text("   ").join(p[1] for p in kept)
        # One line high by CSS: no layout pass per keystroke.
        self.query_one("#backlog-bar", Static).update(text, layout=False)

    def update_detail(self) -> None:
        gap_id = self.query_one(GapTable).highlighted_id()
        shown = (gap_id, self.chump.version)
        if shown == self._detail_shown:  # a rebuild and its Highlighted message both ask
            return
        self._detail_shown = shown
        gap = self.chump.by_id.get(gap_id) if gap_id else None
        done = self.chump.done_now()
        reason = self.chump.gap_reason(gap, done) if gap else None
        self.query_one(GapDetail).show(gap, reason, done, self.chump.by_id)

    def refresh_view(self, dirty_output: set[str]) -> None:
        if self.chump.version != self._seen_version:
            self.rebuild()

    def on_gap_table_highlighted(self, event: GapTable.Highlighted) -> None:
        self.update_detail()

    # --------------------------------------------------------------- actions
    def action_toggle_select(self) -> None:
        table = self.query_one(GapTable)
        gap_id = table.highlighted_id()
        if gap_id is None:
            return
        if gap_id in self.selected:
            self.selected.remove(gap_id)
        else:
            self.selected.append(gap_id)
        done = self.chump.done_now()
        table.set_marks(gap_id, gap_id in self.selected,
                        self.chump.gap_reason(self.chump.by_id[gap_id], done))
        table.action_cursor_down()
        self.update_bar(table.row_count)

    def action_auto_pick(self) -> None:
        done = self.chump.done_now()
        picks = [g.id for g in self.chump.setup.backlog.gaps
                 if self.chump.gap_reason(g, done) is None]
        # Same order as the reference picker: priority tier, then declared order.
        rank = {"P0": 0, "P1": 1, "P2": 2}
        picks.sort(key=lambda i: rank.get(self.chump.by_id[i].priority, 3))
        self.selected = picks[: self.chump.setup.max_parallel]
        if not self.selected:
            self.notify("Nothing is pickable right now.", severity="warning")
        self.rebuild()

    def action_dispatch(self) -> None:
        if not self.chump.writable():
            return
        ids = list(self.selected)
        if not ids:
            gap_id = self.query_one(GapTable).highlighted_id()
            ids = [gap_id] if gap_id else []
        if not ids:
            self.notify("Select gaps with space (or a to auto-pick) first.", severity="warning")
            return
        done = self.chump.done_now()
        gaps = [self.chump.by_id[i] for i in ids]
        reasons = {g.id: self.chump.gap_reason(g, done) for g in gaps}

        def confirmed(plan: DispatchPlan | None) -> None:
            if plan is not None and not self.chump.setup.dry_run:
                self.selected = []
                self.chump.dispatch_gaps(plan.gaps)
                self.app.switch_mode("monitor")

        setup = self.chump.setup
        engine = self.chump.engine
        active = sum(1 for d in self.chump.dispatches.values() if d.active)
        self.app.push_screen(ConfirmDispatch(gaps, reasons, setup.repo_root, setup.dry_run,
                                             setup.max_parallel - active, setup.max_parallel,
                                             setup.backlog.unusable,
                                             {g.id: self.chump.leftovers[g.id].note()
                                              for g in gaps if g.id in self.chump.leftovers},
                                             self.chump.fleet_hosts(),
                                             {g.id: engine.agent_for(g.id) for g in gaps},
                                             engine.config.base_ref, engine.config.fix_ci),
                             confirmed)

    def action_warnings(self) -> None:
        warnings = self.chump.setup.backlog.warnings
        if not warnings:
            self.notify("The backlog loaded without warnings.")
            return
        from chump_tui.tui.screens.text_view import TextView

        self.app.push_screen(TextView(f"{len(warnings)} backlog warning(s)",
                                      "\n".join(f"- {visible(w)}" for w in warnings)))

    def action_cycle_filter(self) -> None:
        self.filter = NEXT_FILTER[self.filter]
        self.rebuild()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        search.display = False
        self.query_text = ""
        self.query_one(GapTable).focus()
        self.rebuild()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(GapTable).focus()
        if not self.query_text:
            event.input.display = False
