"""Textual messages the engine bridge posts to the app (from engine threads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from chump_tui.dispatch_record import Dispatch


@dataclass
class DispatchUpdated(Message):
    """A dispatch row changed. A queued older update for the same key is replaced."""

    dispatch: Dispatch
    why: str

    def can_replace(self, message: Message) -> bool:
        # Outcomes are never dropped: each one raises a toast.
        return (isinstance(message, DispatchUpdated) and message.dispatch.key == self.dispatch.key
                and message.why != "outcome")


@dataclass
class GitHubStatus(Message):
    ok: bool
    error: str | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GitHubStatus)


@dataclass
class EngineNotice(Message):
    level: str
    text: str
