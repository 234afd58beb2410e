"""Dispatch confirmation: each gap with its worktree and branch, which go now and which wait
for a free slot (max-parallel), and which are not pickable (skipped unless overridden).

Enter dispatches (nothing is destroyed); in dry-run it says WOULD DISPATCH and only closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from chump_tui.backlog import Gap
from chump_tui.outside_text import visible
from chump_tui.paths import dispatch_paths
from chump_tui.tui.screens.dialog import Dialog
from chump_tui.tui.text import line


@dataclass(frozen=True)
class DispatchPlan:
    gaps: list[Gap]  # in order: the first `slots` start now, the rest wait for a free slot


class ConfirmDispatch(Dialog[DispatchPlan | None]):
    BINDINGS = [
        Binding("n", "cancel", "Cancel"),
        Binding("y", "confirm", "Dispatch"),
        Binding("o", "override", "Dispatch the unpickable too"),
    ]

    def __init__(self, gaps: list[Gap], reasons: Mapping[str, str | None], repo_root: Path,
                 dry_run: bool, slots: int, max_parallel: int,
                 never: Mapping[str, str] | None = None,
                 notes: Mapping[str, str] | None = None,
                 hosts: list[tuple[str, int, int]] | None = None,
                 agents: Mapping[str, str] | None = None, base_ref: str = "",
                 fix_ci: int = 0) -> None:
        super().__init__()
        self.gaps = gaps
        self.reasons = reasons
        self.repo_root = repo_root
        self.dry_run = dry_run
        self.slots = max(0, slots)
        self.max_parallel = max_parallel
        self.never = never or {}  # duplicated ids: not even an override dispatches them
        self.notes = notes or {}  # e.g. "continues its branch claude/x (commits kept)"
        self.hosts = hosts  # a fleet's hosts that are up: (name, free slots, slots)
        self.agents = agents or {}  # gap id -> the harness (or backend) it would run
        self.base_ref = base_ref
        self.fix_ci = fix_ci  # --fix-ci: CI repairs per attempt
        self.override = False
        self.DEFAULT_BUTTON = "cancel" if dry_run or not self.chosen() else "confirm"

    def chosen(self) -> list[Gap]:
        return [g for g in self.gaps if g.id not in self.never
                and (self.override or not self.reasons.get(g.id))]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(id="dispatch-table")
            if self.dry_run:
                yield Static(Text("dry-run: nothing will be created or spawned. Start with "
                                  "--execute to dispatch for real.", style="italic"))
            with Horizontal(id="dialog-buttons"):
                if not self.dry_run:
                    yield Button("Dispatch (y)", variant="primary", id="confirm")
                yield Button("Close (esc)" if self.dry_run else "Cancel (esc)", id="cancel")
            yield self.hint()

    def on_mount(self) -> None:
        self.redraw()
        super().on_mount()

    def redraw(self) -> None:
        chosen = self.chosen()
        now, later = chosen[: self.slots], chosen[self.slots:]
        verb = "WOULD DISPATCH" if self.dry_run else "DISPATCH"
        title = Text.assemble((f"{verb}: {len(chosen)} gap(s)", "bold"))
        if not chosen:
            title.append("  none is pickable: o dispatches them anyway", style="yellow")
        if later:
            title.append(f" — {len(now)} now, {len(later)} when a slot frees "
                         f"(max-parallel {self.max_parallel})", style="yellow")
        if self.base_ref:
            title.append(f"\nfrom {visible(self.base_ref)}", style="dim")
        title.append(", " if self.base_ref else "\n", style="dim")
        title.append(f"failing checks go back to the agent up to {self.fix_ci}× (--fix-ci)"
                     if self.fix_ci else "failing checks wait for you (--fix-ci 0)", style="dim")
        if self.hosts is None:
            title.append((", " if self.base_ref else "\n")
                         + f"worktrees under {visible(self.repo_root)}", style="dim")
        elif self.hosts:
            title.append("\nhosts up: " + ", ".join(
                f"{visible(name)} {free}/{slots} free" for name, free, slots in self.hosts),
                style="magenta")
        else:
            title.append("\nno host is up for this repository: start chump-tui worker; "
                         "these wait for one (QUEUED) up to --dispatch-deadline",
                         style="bold red")
        self.query_one("#dialog-title", Static).update(title)
        table = Table(box=None, expand=True, pad_edge=False, show_header=False)
        table.add_column("gap", style="bold", no_wrap=True)
        table.add_column("when", no_wrap=True)
        table.add_column("agent", no_wrap=True)
        table.add_column("branch and worktree", overflow="fold", ratio=1)
        for gap in chosen:
            wt, branch = dispatch_paths(self.repo_root, gap.id)
            when = Text("now", style="green") if gap in now else Text("queued", style="yellow")
            where = line(f"{branch}  {wt.relative_to(self.repo_root)}")
            table.add_row(line(gap.id), when, line(self.agents.get(gap.id, ""), "cyan"), where)
            if gap.id in self.notes:
                table.add_row("", "", "", line(self.notes[gap.id], "cyan"))
            reason = self.reasons.get(gap.id)
            if reason:
                table.add_row("", Text("anyway", style="red"), "",
                              line(f"not pickable: {reason}", "yellow"))
        skipped = [g for g in self.gaps if g not in chosen]
        if skipped:
            table.add_row("", "", "", "")
            hint = "" if not any(g.id not in self.never for g in skipped) else \
                "   (o: dispatch them anyway)"
            table.add_row(Text(f"skipped {len(skipped)}", style="bold yellow"), "", "",
                          Text(f"not pickable{hint}", style="yellow"))
            for gap in skipped:
                why = self.never.get(gap.id) or self.reasons.get(gap.id) or ""
                table.add_row(line(gap.id), "", "", line(why, "yellow"))
        self.query_one("#dispatch-table", Static).update(table)
        for button in self.query("#confirm"):
            if isinstance(button, Button):
                button.disabled = not chosen
                if chosen and self.focused is None:
                    button.focus()

    def cancel_value(self) -> DispatchPlan | None:
        return None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        chosen = self.chosen()
        if self.dry_run or not chosen:
            self.dismiss(None)
            return
        self.dismiss(DispatchPlan(chosen))

    def action_override(self) -> None:
        self.override = not self.override
        self.redraw()
