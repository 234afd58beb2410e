"""What every confirmation in the console shares: Enter presses the default button (the safe
one where the action destroys something), Esc cancels, Tab moves between buttons, and a hint
line says which button Enter presses."""

from __future__ import annotations

from typing import Generic, TypeVar

from rich.text import Text
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Static

T = TypeVar("T")


class Dialog(ModalScreen[T], Generic[T]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]
    DEFAULT_BUTTON = "cancel"  # the id of the button Enter presses

    def cancel_value(self) -> T | None:
        return None

    def action_cancel(self) -> None:
        self.dismiss(self.cancel_value())

    def hint(self) -> Static:
        return Static(id="dialog-hint")

    def first_focus(self) -> Widget:
        """What has focus when the dialog opens: the default button."""
        return self.query_one(f"#{self.DEFAULT_BUTTON}", Button)

    def on_mount(self) -> None:
        self.first_focus().focus()
        self.update_hint()

    def on_descendant_focus(self) -> None:
        self.update_hint()

    def update_hint(self) -> None:
        focused = self.focused
        label = str(focused.label) if isinstance(focused, Button) else ""
        label = label.split(" (")[0].strip()
        text = Text.assemble(("Enter", "bold"), f": {label}   " if label else "   ",
                             ("Esc", "bold"), ": cancel   ", ("Tab", "bold"),
                             ": next button", style="dim")
        for hint in self.query("#dialog-hint"):
            if isinstance(hint, Static):
                hint.update(text)
