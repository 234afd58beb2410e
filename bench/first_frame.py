"""Child process for the start-up figure: prints seconds from process start to first frame.

``python bench/first_frame.py empty`` runs an empty Textual app; ``console BACKLOG`` runs
chump-tui's console (dry-run) on BACKLOG. The parent passes its launch time in
BENCH_T0 (time.time()), so interpreter start-up and imports are counted.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    t0 = float(os.environ["BENCH_T0"])
    which = sys.argv[1]
    if which == "empty":
        from textual.app import App

        app: object = App()
    else:
        # The same order as `chump-tui`: flags, backlog preload, then the console.
        from chump_tui.cli import _start_preload, parse_args

        opts = parse_args(["--backlog", sys.argv[2], "--repo-root", os.getcwd()])
        preload = _start_preload(opts)
        from chump_tui.tui.app import ChumpApp
        from chump_tui.tui.launch import repo_setup

        app = ChumpApp(repo_setup(opts, preload))

    async def first_frame(pilot: object) -> None:
        if which != "empty":
            from chump_tui.tui.widgets.gap_table import GapTable

            table = app.screen.query_one(GapTable)  # type: ignore[attr-defined]
            assert table.row_count > 0, "backlog not shown"
        print(f"{time.time() - t0:.4f}", flush=True)
        app.exit()  # type: ignore[attr-defined]

    app.run(headless=True, size=(120, 40), auto_pilot=first_frame)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
