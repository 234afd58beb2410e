"""A kill stops the agent: no model request and no tool after it, for every harness. The
grace is for the tools the agent started (they get SIGTERM and time to clean up), not for
the agent to carry on. Against a stand-in CLI that ignores SIGTERM and keeps calling its
model, and against the real claude, codex, opencode and gemini CLIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from chump_tui.backlog import Gap
from chump_tui.engine import Engine, EngineConfig
from chump_tui.pr_providers import ScriptedPrProvider
from chump_tui.reflections import MemoryReflectionWriter
from chump_tui.spawners import RealSpawner
from tests.conftest import wait_for
from tests.harness_rigs import RIGS
from tests.model_servers.base import Reply, Request, ScriptedServer
from tests.model_servers.plan import Say, Step

STUBBORN = """#!{python}
# An agent CLI that will not stop: SIGTERM ignored, a model request every 50 ms, and a
# tool running under a shell that cleans up when it is told to stop.
import json, os, signal, subprocess, time, urllib.request
print(json.dumps({{"type": "system", "subtype": "init", "session_id": "s", "model": "m"}}),
      flush=True)
subprocess.Popen(["sh", "-c", "trap 'echo cleaned > tool-cleaned.txt; exit 0' TERM; "
                  "while :; do sleep 0.05; done"])
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # after the tool: it must not inherit it
turn = 0
while True:
    turn += 1
    urllib.request.urlopen(os.environ["STUBBORN_URL"], data=b"{{}}", timeout=5).read()
    print(json.dumps({{"type": "assistant", "message": {{"id": f"m{{turn}}", "content": [
        {{"type": "text", "text": f"turn {{turn}}"}}], "usage": {{"input_tokens": 10,
        "output_tokens": 1}}}}}}), flush=True)
    time.sleep(0.05)
"""


def engine_for(repo: Path, environ: dict[str, str], harness: str, grace_s: float,
               log_dir: Path) -> tuple[Engine, Gap]:
    gap = Gap("KILL-1", "kill me", "P1", "s", "open")
    engine = Engine(repo, RealSpawner(repo, environ, harness), ScriptedPrProvider({}),
                    MemoryReflectionWriter(), EngineConfig(kill_grace_s=grace_s,
                                                           environ=environ, log_dir=log_dir),
                    backlog=[gap])
    engine.start()
    return engine, gap


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def test_a_stubborn_agent_is_stopped_at_once_and_its_tool_cleans_up(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path) -> None:
    requests: list[float] = []  # one entry per model request

    def count(request: Request) -> Reply:
        requests.append(0.0)
        return Reply(json_body={})

    agent = tmp_path / "stubborn-claude"
    agent.write_text(STUBBORN.format(python=sys.executable))
    agent.chmod(0o755)
    with ScriptedServer(count) as server:
        environ = {**os.environ, "CHUMP_CLAUDE_BIN": str(agent), "STUBBORN_URL": server.url}
        engine, gap = engine_for(git_repo, environ, "claude", 30.0, tmp_path / "logs")
        try:
            engine.dispatch([gap])
            (row,) = engine.snapshot()
            assert row.pid is not None
            wait_for(lambda: len(requests) >= 3, 20, "the agent calling its model")
            asked = len(requests)
            assert engine.kill(row.key)
            wait_for(lambda: gone(row.pid), 3, "the agent CLI stopped (not after the grace)")
            # Dead, it asks nothing more; at most the one request it had sent already.
            assert len(requests) <= asked + 1, len(requests) - asked
            worktree = git_repo / ".claude" / "worktrees" / "kill-1"
            wait_for(lambda: (worktree / "tool-cleaned.txt").exists(), 10,
                     "its tool told to stop, and cleaning up")
            assert engine.wait_until_idle(10)
            assert engine.snapshot()[0].label() == "KILLED"
        finally:
            engine.stop_all("test over", grace_s=0.5)
            engine.close()


@pytest.mark.parametrize("name", sorted(RIGS))
def test_no_request_after_a_kill_with_the_real_cli(name: str, git_repo: Path,
                                                   stub_env: dict[str, str], tmp_path: Path,
                                                   model_servers: list[ScriptedServer]) -> None:
    rig = RIGS[name]

    def plan(gap: str, turn: int) -> Step:
        if turn == 0:  # a tool that cleans up when told to stop
            return rig.shell("trap 'echo cleaned > cleaned.txt; exit 0' TERM; "
                             "sleep 30 & wait")
        if turn == 1:
            return rig.shell("echo AFTER > after.txt")
        return Say("101")

    model = rig.server(plan)
    server = model.start().__enter__()
    model_servers.append(server)
    environ = {**os.environ, **stub_env, **rig.environment(server.url, tmp_path),
               "CHUMP_DISPATCH_DEPTH": ""}
    engine, gap = engine_for(git_repo, environ, name, 30.0, tmp_path / "logs")
    worktree = git_repo / ".claude" / "worktrees" / "kill-1"
    try:
        engine.dispatch([gap])
        (row,) = engine.snapshot()
        assert row.pid is not None, row.error

        def sleeping() -> bool:
            try:
                return any("sleep 30" in " ".join(c.cmdline())
                           for c in psutil.Process(row.pid).children(recursive=True))
            except psutil.Error:
                return False

        wait_for(sleeping, 90, f"{name} running its tool")
        asked = len(model.main_requests)
        assert engine.kill(row.key)
        assert engine.wait_until_idle(10), "the kill waited for the grace"
        # Within the grace (30 s): a full CI run on two cores took more than 10 s once.
        wait_for(lambda: (worktree / "cleaned.txt").exists(), 30, "the tool cleaning up")
        assert engine.snapshot()[0].label() == "KILLED"
        # Nothing of the agent is left to ask the model anything, and it asked nothing more.
        leftovers = subprocess.run(["pgrep", "-f", str(worktree)], capture_output=True)
        assert leftovers.stdout == b""
        assert len(model.main_requests) == asked, model.main_requests
        assert not (worktree / "after.txt").exists()
    finally:
        engine.stop_all("test over", grace_s=0.5)
        engine.close()
