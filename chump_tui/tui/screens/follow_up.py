"""Follow-up (``f`` on the monitor, or a review note from the patch view): the operator's
message to an attempt's agent. Enter sends; shift+Enter or ctrl+j starts a new line; Esc
cancels. The dialog says what will happen: a running agent is stopped first, an ended one
resumed in its worktree; either way the same card goes on as the attempt's next run."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Static, TextArea

from chump_tui.dispatch_record import Dispatch
from chump_tui.tui.screens.dialog import Dialog
from chump_tui.tui.text import line

NEW_LINE_KEYS = ("shift+enter", "ctrl+j", "newline")


class MessageArea(TextArea):
    """A multi-line message where Enter sends (as in chat tools) and shift+Enter or ctrl+j
    (what a terminal without the kitty keyboard protocol sends for it) breaks the line."""

    class Send(Message):
        pass

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Send())
            return
        if event.key in NEW_LINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)


class FollowUp(Dialog[str]):
    DEFAULT_BUTTON = "send"

    def __init__(self, dispatch: Dispatch, prefill: str = "") -> None:
        super().__init__()
        self.dispatch = dispatch
        self.prefill = prefill

    def compose(self) -> ComposeResult:
        d = self.dispatch
        running = d.phase in ("running", "stalled") and not d.waiting_for_pr
        with Vertical(id="dialog", classes="wide follow-up"):
            yield Static(line(f"Follow up {d.gap_id} #{d.attempt}", "bold"), id="dialog-title")
            yield Static(line(f"{d.harness} · session {d.session_id[:8]} · {d.label()} · "
                              f"becomes run {d.run + 1}", "dim"))
            what = ("Its agent stops now (as with ctrl+k) and resumes its conversation with "
                    "your message." if running else
                    "Its agent resumes its conversation with your message, in its worktree.")
            yield Static(what + " The same card goes on; its turns and cost add up.",
                         id="follow-up-text")
            area = MessageArea(self.prefill, id="follow-up-message", soft_wrap=True,
                               show_line_numbers=False)
            yield area
            with Horizontal(id="dialog-buttons"):
                yield Button("Send (enter)", variant="primary", id="send")
                yield Button("Cancel (esc)", id="cancel")
            yield Static(line("Enter: send   shift+Enter / ctrl+j: new line   Esc: cancel",
                              "dim"), id="dialog-hint")

    def first_focus(self) -> Widget:
        area = self.query_one(MessageArea)
        area.move_cursor(area.document.end)
        return area

    def update_hint(self) -> None:
        """The hint is fixed: Enter sends from the message, as from the button."""

    def on_message_area_send(self, message: MessageArea.Send) -> None:
        self._send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self._send()
        else:
            self.action_cancel()

    def _send(self) -> None:
        text = self.query_one(MessageArea).text.strip()
        if not text:
            self.notify("Type a message for the agent first (Esc cancels).", severity="warning")
            return
        self.dismiss(text)
