"""codex, opencode and gemini as the agent: the real CLIs (npm), offline, each against its
scripted model server on 127.0.0.1, running real shell commands in real worktrees."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.harness_rigs import RIGS, serve, ship_plan
from tests.model_servers.base import ScriptedServer
from tests.model_servers.plan import Fail, Step

TWO = """gaps:
  - {id: HX-001, title: one, priority: P1, effort: s, status: open}
  - {id: HX-002, title: two, priority: P1, effort: s, status: open}
"""
OTHERS = ["codex", "opencode", "gemini"]


def plain(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute", "--watch",
                           "--backlog", "gaps.yaml", "--tick", "0.5", *args], cwd=repo,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", OTHERS)
def test_ships_two_gaps_with_real_commits(name: str, git_repo: Path, stub_env: dict[str, str],
                                          tmp_path: Path, model_servers: list[ScriptedServer]) -> None:
    rig = RIGS[name]
    _model, server = serve(rig, ship_plan(rig), model_servers)
    (git_repo / "gaps.yaml").write_text(TWO)
    env = {**stub_env, **rig.environment(server.url, tmp_path)}
    done = plain(git_repo, env, "--harness", name)
    assert done.returncode == 0, done.stderr[-3000:]
    for gap in ("HX-001", "HX-002"):
        branch = f"claude/{gap.lower()}"
        assert re.search(rf"SHIPPED\s+{branch}\s+PR #\d+", done.stdout), done.stdout
        assert f"work on {gap}" in git(git_repo, "log", "--format=%s", branch)
        assert git(git_repo, "log", "-1", "--format=%ae", branch).strip() == \
            "chump-dispatch@chump.bot"
    agents = done.stdout.split("=== agents ===")[1]
    assert agents.count(f"  {name}  ") == 2  # the harness per attempt
    assert re.search(r"tokens_in=[1-9]", agents)  # tokens per attempt, from its own events
    # Nothing ran in the repo's own checkout (opencode follows $PWD, not the working dir).
    assert not list(git_repo.glob("HX-00*.txt"))


@pytest.mark.parametrize("name", OTHERS)
def test_a_failed_turn_is_the_reason(name: str, git_repo: Path, stub_env: dict[str, str],
                                     tmp_path: Path, model_servers: list[ScriptedServer]) -> None:
    rig = RIGS[name]

    def plan(gap: str, turn: int) -> Step:
        return rig.shell("echo a step") if turn == 0 else Fail(400, f"scripted: {name} refused")

    serve(rig, plan, model_servers)
    (git_repo / "gaps.yaml").write_text(TWO.split("  - {id: HX-002")[0])
    env = {**stub_env, **rig.environment(model_servers[-1].url, tmp_path)}
    done = plain(git_repo, env, "--harness", name, "--soft-deadline", "4")
    # Whether the CLI exits after its failed turn (as it does here) or hangs (opencode did on
    # an offline machine: then it is stopped), the outcome says what the model said.
    outcome = [ln for ln in done.stderr.splitlines() if ln.startswith("[monitor] claude/hx-001: ")
               and ("EXITED" in ln or "STALLED" in ln or "KILLED" in ln)]
    assert outcome and f"scripted: {name} refused" in outcome[0], done.stderr[-3000:]


@pytest.mark.parametrize("name", OTHERS)
def test_a_model_server_that_is_down_is_caught_by_the_first_output_watchdog(
        name: str, git_repo: Path, stub_env: dict[str, str], tmp_path: Path) -> None:
    rig = RIGS[name]
    (git_repo / "gaps.yaml").write_text(TWO.split("  - {id: HX-002")[0])
    env = {**stub_env, **rig.environment("http://127.0.0.1:9", tmp_path)}  # nothing listens
    done = plain(git_repo, env, "--harness", name, "--first-output-timeout", "8",
                 "--kill-grace", "2")
    assert re.search(r"KILLED\s+claude/hx-001\s+no output for 8s", done.stdout), \
        done.stdout + done.stderr[-2000:]


def test_a_mixed_backlog_runs_all_four_side_by_side(git_repo: Path, stub_env: dict[str, str],
                                                    tmp_path: Path,
                                                    model_servers: list[ScriptedServer]) -> None:
    env = dict(stub_env)
    lines = ["gaps:"]
    for i, name in enumerate(RIGS):
        rig = RIGS[name]
        _model, server = serve(rig, ship_plan(rig), model_servers)
        env.update(rig.environment(server.url, tmp_path / name))
        lines.append(f"  - {{id: MX-00{i}, title: {name}, priority: P1, effort: s, "
                     f"status: open, harness: {name}}}")
    (git_repo / "gaps.yaml").write_text("\n".join(lines) + "\n")
    done = plain(git_repo, env, "--max-parallel", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shipped=4" in done.stdout
    agents = done.stdout.split("=== agents ===")[1]
    for i, name in enumerate(RIGS):
        assert re.search(rf"claude/mx-00{i} #1  {name}  ", agents), agents


async def test_console_shows_each_harness_running_its_command(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, model_servers: list[ScriptedServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
    from tests.tui_factory import close_app, live_app, until

    lines = ["gaps:"]
    for i, name in enumerate(OTHERS):
        rig = RIGS[name]
        serve(rig, ship_plan(rig, first=["sleep 4; echo slow done"]), model_servers)
        for key, value in rig.environment(model_servers[-1].url, tmp_path / name).items():
            monkeypatch.setenv(key, value)
        lines.append(f"  - {{id: CX-00{i}, title: {name}, priority: P1, effort: s, "
                     f"status: open, harness: {name}}}")
    (git_repo / "gaps.yaml").write_text("\n".join(lines) + "\n")
    app = live_app(git_repo, git_repo / "gaps.yaml", tick_s=0.3, max_parallel=3)
    try:
        async with app.run_test(size=(180, 60)) as pilot:
            await pilot.press("a", "d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
            await pilot.press("enter")
            # codex and gemini report the command as it starts; opencode only once it ended,
            # so its card says the step is running ("thinking…") meanwhile.
            seen: set[str] = set()

            def showing() -> bool:
                for card in app.screen.query("DispatchCard"):
                    text = card.drawn_text()  # type: ignore[attr-defined]
                    if "▶ Bash  sleep 4; echo slow done" in text:
                        seen.add(app.dispatches[card.key].harness)  # type: ignore[attr-defined]
                return {"codex", "gemini"} <= seen

            await until(pilot, showing, 90, "codex's and gemini's running command")
            await until(pilot, lambda: len(app.dispatches) == 3 and all(
                d.label() == "SHIPPED" for d in app.dispatches.values()), 120, "all shipped")
            await until(pilot, lambda: all(d.tokens_in for d in app.dispatches.values()), 30,
                        "tokens recorded")
            assert {d.harness for d in app.dispatches.values()} == set(OTHERS)
    finally:
        close_app(app)
