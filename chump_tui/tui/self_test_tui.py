"""``--self-test`` through the real console, headless: backlog -> auto-pick -> dispatch ->
monitor -> summary over the synthetic backlog, then the reference's verdict line."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from typing import TYPE_CHECKING

from textual.widgets import DataTable

from chump_tui.backlog import load_backlog
from chump_tui.self_test import (
    SELF_TEST_TIMEOUT_S,
    SYNTH_REPO,
    build_self_test_engine,
    collect_report,
    scratch_dir,
    synthetic_backlog_path,
)
from chump_tui.tui.app import ChumpApp, ConsoleSetup
from chump_tui.tui.screens.summary import SummaryScreen

if TYPE_CHECKING:
    from chump_tui.options import Options


async def _drive(app: ChumpApp, expected_rows: int) -> list[str]:
    errors: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a", "d")
        await pilot.pause()
        await pilot.press("y")
        deadline = time.monotonic() + SELF_TEST_TIMEOUT_S
        while time.monotonic() < deadline:
            await pilot.pause(0.02)
            ended = [d for d in app.dispatches.values() if not d.active]
            if len(ended) == expected_rows and not isinstance(app.screen, SummaryScreen):
                await pilot.press("s")  # normally shown by itself; ask for it to be sure
            if isinstance(app.screen, SummaryScreen):
                table = app.screen.query_one(DataTable)
                if table.row_count == expected_rows:
                    break
        else:
            errors.append(f"console did not reach the summary within {SELF_TEST_TIMEOUT_S:.0f}s")
        app.exit(0)
    return errors


def run_self_test_tui(opts: Options) -> int:
    print(f"[chump-tui] --self-test through the console (headless), scratch={scratch_dir()}",
          file=sys.stderr)
    started = time.perf_counter()
    scratch = scratch_dir()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    engine, writer = build_self_test_engine(scratch, opts.max_parallel)
    engine.config.continuous = True
    backlog = load_backlog(synthetic_backlog_path())
    setup = ConsoleSetup(lambda: engine, backlog, SYNTH_REPO, dry_run=False, mode_label="SELF-TEST",
                         max_parallel=opts.max_parallel, reflections_target="memory",
                         export_dir=scratch / "export")
    try:
        errors = asyncio.run(_drive(ChumpApp(setup), len(backlog.gaps)))
        report = collect_report(engine, writer, scratch, started, errors)
    finally:
        engine.close()
    passed = report.passed()
    print(report.verdict_line())
    for line in report.row_lines():
        print(line)
    for error in report.errors:
        print(f"self-test: {error}", file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if passed else 1
