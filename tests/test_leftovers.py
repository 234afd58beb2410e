"""Branches an earlier run left: ours without an open PR is continued (commits kept), ours
with an open PR is not picked (the PR is the work), one we did not make is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import git
from tests.test_cli_e2e import FOUR_GAPS

ONE = FOUR_GAPS.split("  - {id: E2E-002")[0]


def plain(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog",
                           "gaps.yaml", "--tick", "0.1", *args], cwd=repo,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_our_leftover_branch_is_continued_with_its_commits(git_repo: Path,
                                                           stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(ONE)
    first = plain(git_repo, {**stub_env, "FAKE_AGENT_MODE": "commit_fail"}, "--execute",
                  "--watch")
    assert "EXITED 3" in first.stderr, first.stderr
    assert git(git_repo, "log", "--format=%s", "claude/e2e-001").count("agent work") == 1
    dry = plain(git_repo, stub_env)
    assert "WOULD DISPATCH: E2E-001" in dry.stdout
    assert "E2E-001 continues its branch claude/e2e-001 (commits kept)" in dry.stderr
    second = plain(git_repo, {**stub_env, "FAKE_AGENT_MODE": "merge"}, "--execute", "--watch")
    assert second.returncode == 0, second.stderr
    assert "SHIPPED   claude/e2e-001" in second.stdout
    assert git(git_repo, "log", "--format=%s", "claude/e2e-001").count("agent work") == 2


def test_a_leftover_with_an_open_pr_is_not_picked(git_repo: Path,
                                                  stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(ONE)
    first = plain(git_repo, {**stub_env, "FAKE_AGENT_MODE": "commit_fail"}, "--execute",
                  "--watch")
    assert "EXITED 3" in first.stderr
    Path(stub_env["STUB_GH_STATE"]).write_text("claude/e2e-001 OPEN\n")
    dry = plain(git_repo, stub_env)
    assert "WOULD DISPATCH" not in dry.stdout
    assert "E2E-001 not dispatched: PR #100 is open on claude/e2e-001 (the PR is the work)" \
        in dry.stderr
    run = plain(git_repo, stub_env, "--execute", "--watch")
    assert "DISPATCHED" not in run.stdout and "DISPATCH-FAILED" not in run.stderr


def test_a_branch_we_did_not_make_is_never_touched(git_repo: Path,
                                                   stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(ONE)
    git(git_repo, "branch", "claude/e2e-001")
    before = git(git_repo, "rev-parse", "claude/e2e-001")
    dry = plain(git_repo, stub_env)
    assert "WOULD DISPATCH" not in dry.stdout
    assert "branch claude/e2e-001 exists (not ours): delete it (git branch -D claude/e2e-001)" \
        in dry.stderr
    run = plain(git_repo, stub_env, "--execute", "--watch")
    assert "DISPATCHED" not in run.stdout
    assert git(git_repo, "rev-parse", "claude/e2e-001") == before
    assert not (git_repo / ".claude" / "worktrees" / "e2e-001").exists()


async def test_console_says_why_and_continues(git_repo: Path, stub_env: dict[str, str],
                                              monkeypatch: object) -> None:
    from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
    from tests.tui_factory import close_app, live_app, screen_text, until

    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    git(git_repo, "branch", "claude/e2e-002")  # not ours
    app = live_app(git_repo, git_repo / "gaps.yaml")
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: "E2E-002" in app.leftovers, 10, "the scan")
            await pilot.press("down")  # E2E-002 highlighted: its detail pane says why
            await until(pilot, lambda: "(not ours)" in screen_text(app), 5,
                        "the reason in the backlog")
            await pilot.press("space", "d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
            assert "skipped 1" in screen_text(app)
    finally:
        close_app(app)
