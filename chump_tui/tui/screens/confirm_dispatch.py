"""Dispatch confirmation: each gap with its worktree and branch; WOULD DISPATCH in dry-run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from chump_tui.backlog import Gap
from chump_tui.outside_text import visible
from chump_tui.paths import dispatch_paths
from chump_tui.tui.text import line


class ConfirmDispatch(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Dispatch"),
    ]

    def __init__(self, gaps: list[Gap], reasons: Mapping[str, str | None], repo_root: Path,
                 dry_run: bool) -> None:
        super().__init__()
        self.gaps = gaps
        self.reasons = reasons
        self.repo_root = repo_root
        self.dry_run = dry_run

    def compose(self) -> ComposeResult:
        verb = "WOULD DISPATCH" if self.dry_run else "DISPATCH"
        table = Table(box=None, expand=True, pad_edge=False)
        table.add_column("gap", style="bold", no_wrap=True)
        table.add_column("branch", no_wrap=True)
        table.add_column("worktree", overflow="fold")
        for gap in self.gaps:
            wt, branch = dispatch_paths(self.repo_root, gap.id)
            table.add_row(line(gap.id), line(branch), line(wt.relative_to(self.repo_root)))
            reason = self.reasons.get(gap.id)
            if reason:
                table.add_row("", line(f"⚠ not pickable: {reason}", "yellow"), "")
        with Vertical(id="dialog"):
            yield Static(Text.assemble((f"{verb}: {len(self.gaps)} gap(s)", "bold"),
                                       (f"\nworktrees under {visible(self.repo_root)}", "dim")),
                         id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(table)
            if self.dry_run:
                yield Static(Text("dry-run: nothing will be created or spawned. Start with "
                                  "--execute to dispatch for real.", style="italic"))
            with Horizontal(id="dialog-buttons"):
                if not self.dry_run:
                    yield Button("Dispatch (y)", variant="primary", id="confirm")
                yield Button("Close (esc)" if self.dry_run else "Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(not self.dry_run)

    def action_cancel(self) -> None:
        self.dismiss(False)
