"""A yes/no question about something destructive (removing a worktree): Enter says no."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from chump_tui.tui.screens.dialog import Dialog
from chump_tui.tui.text import line


class Confirm(Dialog[bool]):
    BINDINGS = [Binding("n", "cancel", "No"), Binding("y", "answer(True)", "Yes")]
    DEFAULT_BUTTON = "cancel"

    def __init__(self, title: str, body: Text, yes: str = "Yes (y)") -> None:
        super().__init__()
        self.heading = title
        self.body = body
        self.yes = yes

    def cancel_value(self) -> bool:
        return False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(line(self.heading, "bold"), id="dialog-title")
            yield Static(self.body)
            with Horizontal(id="dialog-buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("Cancel (esc)", id="cancel")
            yield self.hint()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
