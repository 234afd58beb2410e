"""The keys every screen's footer starts with: quit and help.

Textual's footer lists a screen's keys before the app's, and at 80 columns the last ones
are cut: these lead each screen's own list, so ``q`` and ``?`` are always shown first.
"""

from __future__ import annotations

from textual.binding import Binding

FIRST_KEYS = [Binding("q", "app.request_quit", "Quit"),
              Binding("question_mark", "app.help", "Help")]
