"""Real signals: SIGTERM to plain --watch stops and records every agent (exit 143); SIGTERM or
SIGHUP to the console leaves agents running, says so, and the next start re-attaches them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from chump_tui.agent_process import group_has_live_member
from tests.conftest import saved_rows, wait_for
from tests.test_cli_e2e import FOUR_GAPS
from tests.tmux_session import TmuxPane

TWO = "\n".join(FOUR_GAPS.splitlines()[:3]) + "\n"


def state(repo: Path) -> list[dict[str, object]]:
    return saved_rows(repo / "sessions" / "chump-tui")


def running_pids(repo: Path, n: int) -> list[int]:
    wait_for(lambda: len([d for d in state(repo) if d["phase"] == "running"]) == n, 30,
             f"{n} agents running")
    return [int(str(d["pid"])) for d in state(repo)]


def test_sigterm_to_plain_watch_stops_and_records_every_agent(git_repo: Path,
                                                             stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(TWO)
    env = {**os.environ, **stub_env, "FAKE_AGENT_MODE": "hang"}
    proc = subprocess.Popen([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog",
                             "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                             "--kill-grace", "0.5"], cwd=git_repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = running_pids(git_repo, 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert out.count("KILLED    claude/e2e-00") == 2 and out.count("terminated") == 2
    assert "[chump-tui] terminated: stopping every agent" in err
    for pid in pids:
        assert not group_has_live_member(pid)
    import sqlite3

    rows = sqlite3.connect(git_repo / "sessions" / "chump_memory.db").execute(
        "SELECT outcome_class FROM chump_reflections").fetchall()
    assert rows == [("failure",), ("failure",)]


def flat(screen: str) -> str:
    """The screen's text as one line: toast borders and line breaks gone."""
    return " ".join(screen.replace("▌", " ").split())


def console(pane: TmuxPane) -> None:
    pane.run([sys.executable, "-m", "chump_tui", "--execute", "--backlog", "gaps.yaml",
              "--tick", "0.3"])


def console_pid(repo: Path) -> int:
    lock = repo / "sessions" / "chump-tui" / "lock"
    wait_for(lambda: lock.exists() and lock.read_text().strip().isdigit(), 30, "the lock")
    return int(lock.read_text())


def test_console_closed_by_sigterm_or_sighup_leaves_agents_and_reattaches(
        git_repo: Path, stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(TWO)
    env = {**stub_env, "FAKE_AGENT_MODE": "hang"}
    pane = TmuxPane(120, 40)
    pids: list[int] = []
    try:
        pane.start(git_repo, env)
        console(pane)
        pane.wait_for(lambda s: "E2E-001" in s, 30, "the backlog")
        pane.send("a")
        pane.send("d")
        pane.wait_for(lambda s: "DISPATCH: 2 gap" in s, 10, "the dialog")
        pane.send("Enter")
        pids = running_pids(git_repo, 2)
        os.kill(console_pid(git_repo), signal.SIGTERM)
        screen = pane.wait_for(lambda s: "closed by SIGTERM" in s, 20, "the console to close")
        assert "2 agent(s) keep running and the next start in this repo re-attaches them" in \
            flat(screen)
        assert all(group_has_live_member(pid) for pid in pids)

        console(pane)  # the next start
        pane.wait_for(lambda s: "re-attached 2 agent(s) still running" in flat(s), 30,
                      "the re-attach notice")
        assert all(group_has_live_member(pid) for pid in pids)

        # The terminal goes away (SIGHUP): the console closes, the agents keep running.
        holder = console_pid(git_repo)
        pane.close()
        wait_for(lambda: not psutil.pid_exists(holder) or psutil.Process(holder).status() ==
                 psutil.STATUS_ZOMBIE, 20, "the console gone with its terminal")
        assert all(group_has_live_member(pid) for pid in pids)
        assert [d["phase"] for d in state(git_repo)] == ["running", "running"]
    finally:
        pane.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
