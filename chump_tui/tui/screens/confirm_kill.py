"""Kill confirmation: Enter cancels (the safe choice), ``y`` kills. The dialog closes as the
kill starts; the card shows the SIGKILL countdown. On an agent already being killed it
offers SIGKILL now instead of waiting out the grace."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from chump_tui.dispatch_record import Dispatch
from chump_tui.tui.screens.dialog import Dialog
from chump_tui.tui.text import line


class ConfirmKill(Dialog[bool]):
    BINDINGS = [Binding("n", "cancel", "Cancel"), Binding("y", "kill", "Kill")]
    DEFAULT_BUTTON = "cancel"

    def __init__(self, dispatch: Dispatch, grace_s: float, do_kill: Callable[[], bool],
                 force: bool = False) -> None:
        super().__init__()
        self.dispatch = dispatch
        self.grace_s = grace_s
        self.do_kill = do_kill
        self.force = force

    def cancel_value(self) -> bool:
        return False

    def compose(self) -> ComposeResult:
        d = self.dispatch
        verb = "SIGKILL" if self.force else "Kill"
        with Vertical(id="dialog"):
            yield Static(line(f"{verb} {d.gap_id} #{d.attempt}{' now' if self.force else ''}?",
                              "bold"), id="dialog-title")
            yield Static(line(f"branch {d.branch}   pid {d.pid}   {d.harness or d.backend}"))
            if self.force:
                text = ("It is being killed: SIGTERM went out and the grace is running. "
                        "SIGKILL now ends its whole process group at once.")
            else:
                text = (f"The agent stops now (no further model request or tool); the tools "
                        f"it started get SIGTERM, and SIGKILL after {self.grace_s:g}s if they "
                        "are still running. The other agents keep running; the card shows "
                        "the countdown.")
            yield Static(text, id="kill-text")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{'SIGKILL now' if self.force else 'Kill'} (y)", variant="error",
                             id="kill")
                yield Button("Cancel (esc)", id="cancel")
            yield self.hint()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "kill":
            self.action_kill()
        else:
            self.action_cancel()

    def action_kill(self) -> None:
        started = self.do_kill()
        if not started:
            self.notify(f"{self.dispatch.gap_id} #{self.dispatch.attempt} has ended: "
                        "nothing to kill.", severity="warning")
        self.dismiss(started)
