"""Turns engine events (on engine threads) into Textual messages and cheap dirty marks.

Output lines are the high-rate stream: they only mark their dispatch dirty
(a set add under a lock); the app's redraw timer picks them up at a bounded
rate. Everything else becomes a posted message, handled on the UI thread.
"""

from __future__ import annotations

import threading
from typing import Any

from textual.app import App

from chump_tui.events import (
    Attention,
    DispatchChanged,
    EngineEvent,
    GitHubPolled,
    Notice,
    OutputLine,
)
from chump_tui.tui.messages import DispatchUpdated, EngineNotice, GitHubStatus


class EngineBridge:
    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._dirty_output: set[str] = set()

    def __call__(self, event: EngineEvent) -> None:
        if isinstance(event, OutputLine):
            with self._lock:
                self._dirty_output.add(event.key)
        elif isinstance(event, DispatchChanged):
            self.app.post_message(DispatchUpdated(event.dispatch, event.why))
        elif isinstance(event, GitHubPolled):
            self.app.post_message(GitHubStatus(event.ok, event.error))
        elif isinstance(event, Notice):
            self.app.post_message(EngineNotice(event.level, event.text))
        elif isinstance(event, Attention) and event.kind == "budget":  # QUIET has its badge
            self.app.post_message(EngineNotice("warning", event.text))

    def take_dirty_output(self) -> set[str]:
        with self._lock:
            dirty, self._dirty_output = self._dirty_output, set()
        return dirty
