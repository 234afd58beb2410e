"""Child process for the start-up figure: prints seconds from process start to first frame.

``python bench/first_frame.py empty`` runs an empty Textual app; ``console BACKLOG`` runs
chump-tui's console (dry-run) on BACKLOG through ``chump_tui.cli.start_console``, the
same start-up path as the ``chump-tui`` command, with the app run headless. The parent
passes its launch time in BENCH_T0 (time.time()), so interpreter start-up and imports
are counted. The clock stops when the app hands its first frame to the (headless)
driver; for the console, the first frame with the backlog's rows on screen.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def main() -> None:
    t0 = float(os.environ["BENCH_T0"])
    which = sys.argv[1]

    def shows_backlog(app: Any, screen: Any) -> bool:
        if which == "empty":
            return True
        from chump_tui.tui.widgets.gap_table import GapTable

        if not getattr(screen, "ready", False):
            return False
        table = screen.query_one(GapTable)
        return bool(table.row_count > 0 and table.region.height > 0)

    def run_headless(app: Any) -> None:
        original = app._display
        done = False

        def display(screen: Any, renderable: Any) -> None:
            nonlocal done
            original(screen, renderable)
            if renderable is not None and not done and shows_backlog(app, screen):
                done = True
                print(f"{time.time() - t0:.4f}", flush=True)
                app.call_later(app.exit)

        app._display = display
        app.run(headless=True, size=(120, 40))
        if not done:
            raise SystemExit("the app exited before its first frame")

    if which == "empty":
        from textual.app import App

        run_headless(App())
    else:
        from chump_tui.cli import parse_args, start_console

        start_console(parse_args(["--backlog", sys.argv[2], "--repo-root", os.getcwd()]),
                      run_headless)


if __name__ == "__main__":
    main()
