"""The keys every screen's footer starts with: quit and help.

Textual's footer lists a screen's keys before the app's, and at 80 columns the last ones
are cut: these lead each screen's own list, so ``q`` and ``?`` are always shown first.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.binding import Binding

FIRST_KEYS = [Binding("q", "app.request_quit", "Quit"),
              Binding("question_mark", "app.help", "Help")]


def keys_for(bindings: Sequence[object], actions: tuple[str, ...]) -> set[str]:
    """The keys bound to ``actions``: in a read-only view they are hidden from the footer,
    yet pressing one says why nothing happens (see ``ChumpApp.writable``)."""
    return {key.strip() for b in bindings if isinstance(b, Binding) and b.action in actions
            for key in b.key.split(",")}
