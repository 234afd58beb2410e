"""Follow-ups against the real agent CLIs (claude, codex, opencode, gemini), offline, each
against its scripted model server: an ended attempt resumed with ``chump-tui follow-up``
reaches the model with its earlier conversation, its new commit lands on the same branch,
and its numbers add to the attempt's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.harness_rigs import RIGS, Rig, serve
from tests.model_servers.base import ScriptedServer
from tests.model_servers.plan import Say, Step
from tests.test_cli_e2e import reflection_rows

ONE = "gaps:\n  - {id: FU-7, title: follow me up, priority: P1, effort: s, status: open}\n"


class TwoRuns:
    """First run: a commit, then the model is done (no PR). After that (the follow-up):
    another commit, the PR, done. Counted by requests, since each CLI numbers turns its
    own way; every request must name the gap (the first prompt's words), so a request
    that does proves the CLI sent the earlier conversation along."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.first_done = False
        self.after = 0

    def __call__(self, gap: str, turn: int) -> Step:
        if not self.first_done:
            if turn == 0:
                return self.rig.shell(f"echo one > {gap}-one.txt && git add {gap}-one.txt && "
                                      f"git commit -qm 'first run of {gap}' && echo ok")
            self.first_done = True
            return Say("Committed; no PR yet.")
        self.after += 1
        steps = [f"echo two > {gap}-two.txt && git add {gap}-two.txt && "
                 f"git commit -qm 'follow-up of {gap}' && echo ok", "gh pr create --fill"]
        return self.rig.shell(steps[self.after - 1]) if self.after <= len(steps) else Say("101")


def chump(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chump_tui", *args], cwd=repo,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=180)


def numbers(stdout: str) -> tuple[int, int]:
    """(turns, tokens in) of the attempt's agent line in the plain summary."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("  claude/fu-7 #1  "))
    found = re.search(r"(\d+) turns  in ([\d.]+)(k?)", line)
    assert found, line
    tokens = float(found.group(2)) * (1000 if found.group(3) else 1)
    return int(found.group(1)), int(tokens)


@pytest.mark.parametrize("name", list(RIGS))
def test_a_follow_up_resumes_the_real_cli_with_its_conversation(
        name: str, git_repo: Path, stub_env: dict[str, str], tmp_path: Path,
        model_servers: list[ScriptedServer]) -> None:
    rig = RIGS[name]
    plan = TwoRuns(rig)
    model, server = serve(rig, plan, model_servers)
    (git_repo / "gaps.yaml").write_text(ONE)
    env = {**stub_env, **rig.environment(server.url, tmp_path)}
    first = chump(git_repo, env, "--no-tui", "--execute", "--watch", "--backlog", "gaps.yaml",
                  "--harness", name, "--tick", "0.5", "--soft-deadline", "6")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "STALLED" in first.stdout, first.stdout
    before = numbers(first.stdout)
    requests_before = len(model.main_requests)

    done = chump(git_repo, env, "follow-up", "FU-7", "Open the pull request now, please.",
                 "--backlog", "gaps.yaml", "--harness", name, "--tick", "0.5",
                 "--soft-deadline", "120")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "RESUMED: FU-7#1 (follow-up 2)" in done.stdout
    assert re.search(r"SHIPPED\s+claude/fu-7\s+PR #\d+", done.stdout), done.stdout
    # The resumed run's requests carried the first prompt: the earlier conversation.
    assert len(model.main_requests) > requests_before
    assert all(gap == "FU-7" for gap, _ in model.main_requests[requests_before:])
    log = git(git_repo, "log", "--format=%s", "claude/fu-7")
    assert "first run of FU-7" in log and "follow-up of FU-7" in log
    after = numbers(done.stdout)
    assert after[0] > before[0] and after[1] > before[1], (before, after)
    assert "follow_ups=1  ci_repairs=0" in done.stdout


def test_real_claude_repairs_a_failed_check_with_its_log_and_ships(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path,
        model_servers: list[ScriptedServer]) -> None:
    rig = RIGS["claude"]
    seen: list[str] = []

    def plan(gap: str, turn: int) -> Step:
        repair = [n for n, text in enumerate(seen) if "Failing checks: unit-tests" in text]
        if not repair:  # the first run: a commit and an open PR whose check fails
            steps = [f"echo one > {gap}.txt && git add {gap}.txt && git commit -qm 'work' "
                     "&& echo ok", "gh pr create --fill"]
            return rig.shell(steps[turn]) if turn < len(steps) else Say("PR opened.")
        if len(seen) - 1 == repair[0]:  # the repair's first request: fix, push, CI green
            return rig.shell(f"echo fixed >> {gap}.txt && git commit -qam 'fix the sum' && "
                             f'echo "claude/fu-8 MERGED @$(date +%s)" >> "$STUB_GH_STATE"')
        return Say("Fixed and pushed.")

    model, server = serve(rig, plan, model_servers)
    original = model.step_for

    def recording(text: str, turn: int, main: bool = True, idle: str = "ok") -> Step:
        if main:
            seen.append(text)
        return original(text, turn, main, idle)

    model.step_for = recording  # type: ignore[method-assign]
    (git_repo / "gaps.yaml").write_text(ONE.replace("FU-7", "FU-8"))
    env = {**stub_env, **rig.environment(server.url, tmp_path),
           "STUB_GH_CREATE_STATE": "OPEN CLEAN unit-tests"}
    done = chump(git_repo, env, "--no-tui", "--execute", "--watch", "--backlog", "gaps.yaml",
                 "--tick", "0.5", "--fix-ci", "2")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert re.search(r"SHIPPED\s+claude/fu-8\s+PR #101", done.stdout), done.stdout
    assert "RESUMED: FU-8#1 (fixing CI (1/2))" in done.stdout
    repair = next(text for text in seen if "Failing checks: unit-tests" in text)
    assert "--- run 900 ---" in repair and "AssertionError: assert 3 == 4" in repair
    assert "fix the sum" in git(git_repo, "log", "--format=%s", "claude/fu-8")
    assert "follow_ups=0  ci_repairs=1" in done.stdout
    assert [outcome for _, outcome in reflection_rows(git_repo)] == ["success"]
