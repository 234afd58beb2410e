"""Quit with agents running: stop them and remove their worktrees, stop them and keep the
worktrees, or leave them running (the default: Enter destroys nothing). In the demo, whose
agents are simulations in a throwaway repository, the only way out stops them."""

from __future__ import annotations

from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Static

from chump_tui.tui.screens.dialog import Dialog

QuitChoice = Literal["stop_remove", "stop_keep", "leave"]


class QuitDialog(Dialog[QuitChoice | None]):
    BINDINGS = [
        Binding("1", "choose('stop_remove')", "Stop + remove worktrees"),
        Binding("2", "choose('stop_keep')", "Stop, keep worktrees"),
        Binding("3", "choose('leave')", "Leave running"),
    ]

    def __init__(self, active: int, grace_s: float, demo: bool = False) -> None:
        super().__init__()
        self.active = active
        self.grace_s = grace_s
        self.demo = demo
        self.DEFAULT_BUTTON = "stop_remove" if demo else "leave"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble((f"{self.active} agent(s) still running.", "bold"),
                                       " What should happen to them?"), id="dialog-title")
            if self.demo:
                yield Static("These are the demo's simulated agents: quitting stops them and "
                             "removes the demo's throwaway repository.")
                yield Button("Stop them and quit", id="stop_remove", variant="error")
            else:
                yield Static(f"Stopping ends each agent at once and gives the tools it "
                             f"started {self.grace_s:g}s before SIGKILL. Leaving them running "
                             "keeps them working after the console exits; the next start in "
                             "this repo re-attaches them.")
                yield Button("1  Stop them and remove their worktrees", id="stop_remove",
                             variant="error")
                yield Button("2  Stop them, keep the worktrees", id="stop_keep",
                             variant="warning")
                yield Button("3  Leave them running", id="leave", variant="primary")
            yield Button("Cancel (esc)", id="cancel")
            yield self.hint()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self.dismiss(event.button.id)  # type: ignore[arg-type]

    def action_choose(self, choice: QuitChoice) -> None:
        if self.demo and choice != "stop_remove":
            return
        self.dismiss(choice)
