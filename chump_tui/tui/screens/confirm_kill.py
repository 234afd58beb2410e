"""Kill confirmation; after confirming it shows the grace countdown until the agent is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from chump_tui.dispatch_record import Dispatch
from chump_tui.tui.text import assemble, line

if TYPE_CHECKING:
    from chump_tui.tui.app import ChumpApp


class ConfirmKill(ModalScreen[None]):
    BINDINGS = [Binding("escape,n", "close", "Cancel / close"), Binding("y", "kill", "Kill")]

    def __init__(self, dispatch: Dispatch, grace_s: float, do_kill: Callable[[], bool]) -> None:
        super().__init__()
        self.dispatch = dispatch
        self.grace_s = grace_s
        self.do_kill = do_kill
        self.sent = False

    def compose(self) -> ComposeResult:
        d = self.dispatch
        with Vertical(id="dialog"):
            yield Static(line(f"Kill {d.gap_id} #{d.attempt}?", "bold"), id="dialog-title")
            yield Static(line(f"branch {d.branch}   pid {d.pid}   {d.backend}"))
            yield Static(f"SIGTERM goes to the agent's whole process group now; anything "
                         f"still alive gets SIGKILL after {self.grace_s:g}s. The other agents "
                         "keep running.", id="kill-text")
            with Horizontal(id="dialog-buttons"):
                yield Button("Kill (y)", variant="error", id="kill")
                yield Button("Cancel (esc)", id="close")

    def on_mount(self) -> None:
        self.set_interval(0.25, self.tick)

    def tick(self) -> None:
        if not self.sent:
            return
        app: ChumpApp = self.app  # type: ignore[assignment]
        d = app.dispatches.get(self.dispatch.key, self.dispatch)
        text = self.query_one("#kill-text", Static)
        if d.phase == "killing" and d.kill_deadline is not None:
            left = max(0, int(d.kill_deadline - app.setup.clock() + 0.999))
            text.update(assemble(f"SIGTERM sent to process group {d.pid}. SIGKILL in ",
                                 (f"{left}s", "bold"), " unless it exits first."))
        elif not d.active:
            text.update(assemble((d.label(), "bold"), ": ", d.reason()))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "kill":
            self.action_kill()
        else:
            self.action_close()

    def action_kill(self) -> None:
        if self.sent:
            return
        self.sent = True
        if not self.do_kill():
            self.query_one("#kill-text", Static).update("Nothing to kill: the agent has ended.")
        self.query_one("#kill", Button).disabled = True
        self.query_one("#close", Button).label = "Close (esc)"
        self.tick()

    def action_close(self) -> None:
        self.dismiss(None)
