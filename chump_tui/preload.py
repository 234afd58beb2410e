"""Parse the backlog in a forked child while the parent imports Textual.

The console's start-up is dominated by two CPU-bound steps that cannot overlap in
one process: importing Textual and parsing the backlog. Forking before either
starts lets them run on two cores (see ``chump_tui.forked``).
"""

from __future__ import annotations

from pathlib import Path

from chump_tui.backlog import Backlog, load_backlog
from chump_tui.forked import ForkedCall


class BacklogPreload:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._call = ForkedCall(load_backlog, path)

    def result(self) -> Backlog:
        """The parsed backlog; raises BacklogError exactly as load_backlog would."""
        return self._call.result()
