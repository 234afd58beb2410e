"""A modal that shows a block of text (the diff stat of a branch, an export report)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from chump_tui.tui.text import block, line


class TextView(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.heading = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"):
            yield Static(line(self.heading, "bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(block(self.body))
            yield Static(Text("esc to close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
