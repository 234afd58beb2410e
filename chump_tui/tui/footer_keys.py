"""The keys every screen's footer starts with: quit and help.

Textual's footer lists a screen's keys before the app's, and at 80 columns the last ones
are cut: these lead each screen's own list, so ``q`` and ``?`` are always shown first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual import events
from textual.binding import Binding

if TYPE_CHECKING:
    from chump_tui.tui.app import ChumpApp

FIRST_KEYS = [Binding("q", "app.request_quit", "Quit"),
              Binding("question_mark", "app.help", "Help")]


def keys_for(bindings: Sequence[object], actions: tuple[str, ...]) -> set[str]:
    """The keys bound to ``actions``: in a read-only view they are hidden from the footer,
    yet pressing one says why nothing happens (see ``ChumpApp.writable``)."""
    return {key.strip() for b in bindings if isinstance(b, Binding) and b.action in actions
            for key in b.key.split(",")}


def refuse_watch_only_key(app: ChumpApp, bindings: Sequence[object], hidden: tuple[str, ...],
                          event: events.Key) -> None:
    """In a read-only view, a key of a hidden action does nothing and says why."""
    if app.setup.read_only and event.key in keys_for(bindings, hidden):
        event.stop()
        app.writable()  # says why nothing happens
