"""Start-up with the cyclic GC paused (it always comes back on), the modes, and a shutdown race."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chump_tui.backlog import load_backlog
from chump_tui.cli import parse_args, start_console
from chump_tui.errors import BacklogError, ChumpError
from chump_tui.gc_pause import FULL_COLLECTION_EVERY, gc_paused, pause_for_startup
from chump_tui.tui.app import ChumpApp
from chump_tui.tui.launch import repo_setup
from chump_tui.tui.screens.backlog import BacklogScreen
from chump_tui.tui.screens.monitor import MonitorScreen
from chump_tui.tui.screens.summary import SummaryScreen
from tests.test_cli_e2e import FOUR_GAPS
from tests.tui_factory import every_state, frozen_app, until


@pytest.fixture(autouse=True)
def collector_on_afterwards() -> Iterator[None]:
    yield
    gc.enable()  # a failing test must not leave the rest of the session without a GC


def test_gc_paused_restores_the_previous_state_and_nests() -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_load_backlog_leaves_the_collector_on_even_on_bad_input(tmp_path: Path) -> None:
    good = tmp_path / "gaps.yaml"
    good.write_text("gaps:\n  - id: A-1\n    title: t\n")
    assert [g.id for g in load_backlog(good).gaps] == ["A-1"]
    assert gc.isenabled()
    bad = tmp_path / "bad.yaml"
    bad.write_text("gaps: [\n")
    with pytest.raises(BacklogError):
        load_backlog(bad)
    assert gc.isenabled()


def test_console_start_up_turns_the_collector_back_on_when_it_fails(tmp_path: Path) -> None:
    opts = parse_args(["--backlog", str(tmp_path / "missing.yaml"),
                       "--repo-root", str(tmp_path)])
    with pytest.raises(ChumpError):
        start_console(opts, run_app=lambda app: pytest.fail("no app should run"))
    assert gc.isenabled()


async def test_collector_back_on_after_first_frame_and_modes_round_trip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "set_threshold", lambda *t: thresholds.append(t))
    thresholds: list[tuple[int, ...]] = []
    pause_for_startup()  # as `chump-tui` does before the console starts
    app = frozen_app(every_state())
    async with app.run_test(size=(140, 44)) as pilot:
        await until(pilot, gc.isenabled, 10, "the collector back on after the first frame")
        # and full collections rarer than Python's default while the screen is live
        assert thresholds == [(*gc.get_threshold()[:2], FULL_COLLECTION_EVERY)]
        backlog = app.screen
        assert isinstance(backlog, BacklogScreen)
        await pilot.press("m")
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("s")
        assert isinstance(app.screen, SummaryScreen)
        await pilot.press("b")  # back to the very same backlog screen, not a new one
        assert app.screen is backlog


def test_console_start_up_leaves_yaml_psutil_sqlite_and_the_engine_for_later(
        tmp_path: Path) -> None:
    """The forked child parses the backlog; psutil and sqlite3 wait for the first agent
    and the first reflection, a dry run's engine for the first frame. Each costs the
    first frame 3-30 ms (bench/)."""
    backlog = tmp_path / "gaps.yaml"
    backlog.write_text("gaps:\n  - id: A-1\n    title: t\n")
    code = (
        "import os, sys\n"
        "from chump_tui.cli import parse_args, start_console\n"
        "def run(app):\n"
        "    assert app.setup.backlog.gaps[0].id == 'A-1'\n"
        "    late = ('yaml', 'psutil', 'sqlite3', 'chump_tui.engine', 'chump_tui.dispatch_record')\n"
        "    print(sorted(m for m in late if m in sys.modules))\n"
        f"start_console(parse_args(['--backlog', {str(backlog)!r}, '--repo-root', {str(tmp_path)!r}]), run)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_summary_switch_never_races_shutdown() -> None:
    """The 10 Hz redraw firing while Textual closes every screen stack must not open one.

    (Seen once in the flood benchmark: "dictionary changed size during iteration".)
    """
    ended = [(d, lines) for d, lines in every_state() if d.outcome is not None]
    app = frozen_app(ended)
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, MonitorScreen)
        original = app._close_all

        async def close_all_after_a_redraw() -> None:
            app._summary_due = True
            app._redraw()  # the timer firing in the middle of shutdown
            await original()

        app._close_all = close_all_after_a_redraw  # type: ignore[method-assign]
    assert "summary" not in app._screen_stacks


async def test_dry_run_console_builds_its_engine_just_after_the_first_frame(
        git_repo: Path, stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    opts = parse_args(["--backlog", str(git_repo / "gaps.yaml"), "--repo-root", str(git_repo)])
    setup = repo_setup(opts)
    assert not setup.engine_built
    app = ChumpApp(setup)
    async with app.run_test(size=(140, 44)) as pilot:
        await until(pilot, lambda: setup.engine_built, 10, "the engine built after the frame")
        assert setup.engine_built and app.bridge is not None
        assert setup.engine.writer.describe().endswith("chump_memory.db")
        await pilot.press("m")
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("s")
        assert isinstance(app.screen, SummaryScreen)
    setup.engine.close()
