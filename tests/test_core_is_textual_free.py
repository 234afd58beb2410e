"""The core must not import Textual: plain mode and the self-test stay light."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import chump_tui

CORE = sorted(
    m.name for m in pkgutil.walk_packages(chump_tui.__path__, "chump_tui.")
    if not m.name.startswith("chump_tui.tui") and m.name != "chump_tui.__main__"
)


def test_core_module_list_is_not_empty() -> None:
    assert "chump_tui.engine" in CORE and "chump_tui.cli" in CORE and len(CORE) >= 15
    assert "chump_tui.fleet.worker" in CORE and "chump_tui.agent_streams.claude" in CORE


def test_each_core_module_imports_without_textual() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'textual' not in sys.modules, name\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_plain_dry_run_does_not_import_textual(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backlog = tmp_path / "gaps.yaml"
    backlog.write_text("gaps:\n  - {id: A-1, priority: P1, effort: s, status: open}\n")
    code = (
        "import sys\nfrom chump_tui.cli import main\n"
        f"rc = main(['--no-tui', '--backlog', {str(backlog)!r}])\n"
        "assert 'textual' not in sys.modules\nsys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "WOULD DISPATCH: A-1" in done.stdout


def test_cli_defaults_match_the_monitor_and_watchdogs() -> None:
    from chump_tui import cli, monitor, watchdog

    assert cli.DEFAULT_TICK_S == monitor.DEFAULT_TICK_S
    assert cli.DEFAULT_KILL_GRACE_S == monitor.DEFAULT_KILL_GRACE_S
    assert cli.DEFAULT_FIRST_OUTPUT_TIMEOUT_S == watchdog.DEFAULT_FIRST_OUTPUT_TIMEOUT_S
    assert cli.DEFAULT_IDLE_TIMEOUT_S == watchdog.DEFAULT_IDLE_TIMEOUT_S


def test_plain_dry_run_imports_no_engine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Nor psutil, SQLite, typing or pickle: a dry run does not need them (bench/)."""
    backlog = tmp_path / "gaps.yaml"
    backlog.write_text("gaps:\n  - {id: A-1, priority: P1, effort: s, status: open}\n")
    code = (
        "import sys\nfrom chump_tui.cli import main\n"
        f"rc = main(['--no-tui', '--backlog', {str(backlog)!r}])\n"
        "heavy = [m for m in ('chump_tui.engine', 'psutil', 'sqlite3', 'typing', 'pickle')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\nsys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
