"""Quit with agents running: stop and remove worktrees, stop and keep them, or leave them."""

from __future__ import annotations

from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

QuitChoice = Literal["stop_remove", "stop_keep", "leave"]


class QuitDialog(ModalScreen[QuitChoice | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("1", "choose('stop_remove')", "Stop + remove worktrees"),
        Binding("2", "choose('stop_keep')", "Stop, keep worktrees"),
        Binding("3", "choose('leave')", "Leave running"),
    ]

    def __init__(self, active: int, grace_s: float) -> None:
        super().__init__()
        self.active = active
        self.grace_s = grace_s

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble((f"{self.active} agent(s) still running.", "bold"),
                                       " What should happen to them?"), id="dialog-title")
            yield Static(f"Stopping sends SIGTERM to each agent's whole process group, then "
                         f"SIGKILL after {self.grace_s:g}s. Leaving them running keeps them "
                         "working after the console exits.")
            yield Button("1  Stop them and remove their worktrees", id="stop_remove",
                         variant="error")
            yield Button("2  Stop them, keep the worktrees", id="stop_keep", variant="warning")
            yield Button("3  Leave them running", id="leave", variant="primary")
            yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self.dismiss(event.button.id)  # type: ignore[arg-type]

    def action_choose(self, choice: QuitChoice) -> None:
        self.dismiss(choice)

    def action_cancel(self) -> None:
        self.dismiss(None)
