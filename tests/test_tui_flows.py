"""Pilot tests of the console's flows over a real repo, fake agent, stub gh and SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from chump_tui.agent_process import group_has_live_member
from chump_tui.cli import parse_args
from chump_tui.tui.app import ChumpApp
from chump_tui.tui.launch import close_setup, repo_setup
from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
from chump_tui.tui.screens.monitor import MonitorScreen
from chump_tui.tui.screens.quit_dialog import QuitDialog
from chump_tui.tui.screens.summary import SummaryScreen
from tests.conftest import git
from tests.test_cli_e2e import FOUR_GAPS
from tests.tui_factory import close_app, live_app, screen_text, until

SIZE = (140, 44)


def make(repo: Path, **kw: Any) -> ChumpApp:
    (repo / "gaps.yaml").write_text(FOUR_GAPS)
    return live_app(repo, repo / "gaps.yaml", **kw)


def outcomes(app: ChumpApp) -> dict[str, str]:
    return {k: d.label() for k, d in app.dispatches.items()}


async def test_select_dispatch_outcomes_summary(git_repo: Path, stub_env: dict[str, str]) -> None:
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("space", "space", "d")  # select E2E-001 and E2E-002
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "confirm")
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen | SummaryScreen), 5,
                        f"monitor (on {app.screen})")
            await until(pilot, lambda: len(app.dispatches) == 2 and not any(
                d.active for d in app.dispatches.values()), 30, "both ended")
            assert outcomes(app) == {"E2E-001#1": "SHIPPED", "E2E-002#1": "SHIPPED"}
            # The console says so and stays where the operator is (no jump to the summary).
            await until(pilot, lambda: any("s for the summary" in str(n.message)
                                           for n in app._notifications), 5, "the notice")
            assert isinstance(app.screen, MonitorScreen)
            await pilot.press("s")
            assert isinstance(app.screen, SummaryScreen)
            await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 2, 5,
                        "summary rows")
            await pilot.press("e")
            await app.workers.wait_for_complete()
            await until(pilot, lambda: list((git_repo / "sessions").glob("*.md")), 5, "export")
    finally:
        close_app(app)
    db = sqlite3.connect(git_repo / "sessions" / "chump_memory.db")
    assert db.execute("SELECT COUNT(*) FROM chump_reflections WHERE outcome_class='success'"
                      ).fetchone() == (2,)
    md = next((git_repo / "sessions").glob("chump-tui-summary-*.md")).read_text()
    assert "shipped=2  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in md


async def test_auto_pick_then_kill(git_repo: Path, stub_env: dict[str, str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    app = make(git_repo, kill_grace_s=0.5)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a", "d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5)
            await pilot.press("y")
            await until(pilot, lambda: len(app.dispatches) == 2 and all(
                d.phase == "running" for d in app.dispatches.values()), 20, "two running")
            pids = [d.pid for d in app.dispatches.values()]
            await pilot.press("ctrl+k", "y")  # first card is selected
            await until(pilot, lambda: app.dispatches["E2E-001#1"].phase == "ended", 10,
                        "killed")
            d = app.dispatches["E2E-001#1"]
            assert d.outcome is not None and d.outcome.reason == "killed by operator"
            assert app.dispatches["E2E-002#1"].phase == "running"
            assert pids[0] is not None and not group_has_live_member(pids[0])
            assert pids[1] is not None and group_has_live_member(pids[1])
            await pilot.press("escape")
            app.stopping = True  # as the quit path does: no auto-summary while stopping
            app.engine.stop_all("test cleanup", grace_s=0.2)
    finally:
        close_app(app)


async def test_retry_failed_agent(git_repo: Path, stub_env: dict[str, str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "fail")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d", "y")  # the highlighted gap alone
            await until(pilot, lambda: outcomes(app) == {"E2E-001#1": "EXITED 3"}, 20, "exited")
            monkeypatch.setenv("FAKE_AGENT_MODE", "merge")
            app.engine.spawner_for_retry.environ["FAKE_AGENT_MODE"] = "merge"  # type: ignore[attr-defined]
            await pilot.press("r")
            await until(pilot, lambda: outcomes(app).get("E2E-001#2") == "SHIPPED", 20,
                        "attempt 2 shipped")
            assert outcomes(app)["E2E-001#1"] == "EXITED 3"  # attempt 1 kept
    finally:
        close_app(app)
    db = sqlite3.connect(git_repo / "sessions" / "chump_memory.db")
    assert db.execute("SELECT outcome_class FROM chump_reflections ORDER BY id").fetchall() == [
        ("failure",), ("success",)]


@pytest.mark.parametrize("choice", ["stop_remove", "stop_keep", "leave"])
async def test_quit_with_agents_running(git_repo: Path, stub_env: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch, choice: str) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    app = make(git_repo, kill_grace_s=0.3)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a", "d", "y")
            await until(pilot, lambda: len(app.dispatches) == 2 and all(
                d.phase == "running" for d in app.dispatches.values()), 20, "two running")
            pids = [d.pid for d in app.dispatches.values()]
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitDialog), 5, "quit dialog")
            await pilot.press({"stop_remove": "1", "stop_keep": "2", "leave": "3"}[choice])
            await until(pilot, lambda: not app.is_running, 20, "app exit")
    finally:
        close_app(app)
    assert app.quit_choice == choice
    worktrees = git(git_repo, "worktree", "list")
    if choice == "leave":
        assert all(p is not None and group_has_live_member(p) for p in pids)
        assert worktrees.count(".claude/worktrees/") == 2
        # The next console re-attaches to them and can stop them.
        again = make(git_repo, kill_grace_s=0.3)
        try:
            assert again.setup.extra_notes[0].startswith("re-attached 2 agent(s)")
            assert {n.split(": ", 1)[1] for n in again.setup.extra_notes[1:]} == {
                f"pid {p} re-attached" for p in pids}
            async with again.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: len(again.dispatches) == 2, 5, "restored rows")
                assert all(d.phase == "running" for d in again.dispatches.values())
                await pilot.press("m", "q", "2")
                await until(pilot, lambda: not again.is_running, 20, "second app exit")
        finally:
            close_app(again)
        assert not any(p is not None and group_has_live_member(p) for p in pids)
        for p in pids:
            if p is not None and group_has_live_member(p):
                os.killpg(p, signal.SIGKILL)
    else:
        assert not any(p is not None and group_has_live_member(p) for p in pids)
        assert worktrees.count(".claude/worktrees/") == (0 if choice == "stop_remove" else 2)
        assert all(d.phase == "ended" and d.outcome is not None and d.outcome.kind == "killed"
                   for d in app.engine.snapshot())


async def test_dry_run_dispatch_spawns_nothing(git_repo: Path, stub_env: dict[str, str]) -> None:
    app = make(git_repo)
    app.setup.dry_run = True
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a", "d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5)
            await pilot.press("y")
            await pilot.pause(0.3)
            assert app.dispatches == {}
    finally:
        close_app(app)
    assert not (git_repo / ".claude").exists()


async def test_help_and_palette_open(git_repo: Path, stub_env: dict[str, str]) -> None:
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("question_mark")
            assert "Help" in type(app.screen).__name__
            await pilot.press("escape", "ctrl+p")
            await pilot.pause()
            assert "CommandPalette" in type(app.screen).__name__
            commands = [c.title for c in app.get_system_commands(app.screen_stack[-2])]
            assert "Auto-pick" in commands and "Dispatch" in commands and "Quit" in commands
    finally:
        close_app(app)


async def test_second_console_gets_a_read_only_view(git_repo: Path, stub_env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    owner = make(git_repo, kill_grace_s=0.3)
    try:
        owner.engine.start()
        owner.engine.dispatch([owner.setup.backlog.gaps[0]])
        opts = parse_args(["--execute", "--backlog", str(git_repo / "gaps.yaml"),
                           "--repo-root", str(git_repo)])
        viewer_setup = repo_setup(opts)  # stdin is not a tty: opens the view without asking
        assert viewer_setup.read_only and viewer_setup.mode_label.startswith("READ-ONLY")
        viewer = ChumpApp(viewer_setup)
        async with viewer.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "E2E-001#1" in viewer.dispatches, 10, "mirrored row")
            await pilot.press("m", "ctrl+k")
            await pilot.pause()
            assert type(viewer.screen).__name__ == "MonitorScreen"  # no kill dialog
            assert owner.engine.get("E2E-001#1").phase == "running"  # type: ignore[union-attr]
            await until(pilot, lambda: any("this console only watches" in n.message
                                           for n in viewer._notifications), 5,
                        "the reason the key did nothing")
            await pilot.press("q")
            await until(pilot, lambda: not viewer.is_running, 5, "viewer exit")
        viewer_setup.engine.close()
        owner.engine.stop_all("test cleanup", grace_s=0.2)
    finally:
        close_app(owner)


async def test_read_only_flag_watches_without_taking_the_session(git_repo: Path,
                                                                 stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    opts = parse_args(["--execute", "--read-only", "--backlog", str(git_repo / "gaps.yaml"),
                       "--repo-root", str(git_repo)])
    setup = repo_setup(opts)
    assert setup.read_only and setup.mode_label == "READ-ONLY" and setup.store is None
    app = ChumpApp(setup)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a", "d")
            await until(pilot, lambda: any("READ-ONLY: this console only watches" in n.message
                                           for n in app._notifications), 5, "the reason said")
            await pilot.pause()
            assert type(app.screen).__name__ == "BacklogScreen"  # no dispatch dialog
            assert app.engine.snapshot() == []
        # Nobody holds the session: a console may still open it and own it.
        owner = repo_setup(parse_args(["--execute", "--backlog", str(git_repo / "gaps.yaml"),
                                       "--repo-root", str(git_repo)]))
        assert not owner.read_only
        close_setup(owner)
    finally:
        close_app(app)


async def test_diff_and_remove_worktree(git_repo: Path, stub_env: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "open")  # commits, opens a PR and exits 0
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d", "y")
            await until(pilot, lambda: app.dispatches.get("E2E-001#1") is not None
                        and app.dispatches["E2E-001#1"].label().startswith("PR OPEN"), 20,
                        "PR open")
            await pilot.press("g")
            await until(pilot, lambda: type(app.screen).__name__ == "PatchScreen", 10, "patch")
            await app.workers.wait_for_complete()
            await until(pilot, lambda: app.screen.patch is not None, 10, "the patch read")  # type: ignore[attr-defined]
            patch = app.screen.patch  # type: ignore[attr-defined]
            assert [f.path for f in patch.files] == ["agent-output.txt"] and patch.added == 1
            assert "+work for claude/e2e-001" in screen_text(app)
            await pilot.press("escape", "x")
            await pilot.pause()
            assert type(app.screen).__name__ == "MonitorScreen"  # refused: agent still active
            app.engine.kill("E2E-001#1")
            await until(pilot, lambda: not app.dispatches["E2E-001#1"].active, 10, "killed")
            await pilot.press("x")
            await until(pilot, lambda: type(app.screen).__name__ == "Confirm", 5, "confirm")
            assert "is still OPEN" in str(app.screen.body)  # type: ignore[attr-defined]
            await pilot.press("y")
            await app.workers.wait_for_complete()
            await until(pilot, lambda: not (git_repo / ".claude/worktrees/e2e-001").exists(), 10)
            # The card says so, and g shows the branch's commits, not git's "fatal".
            await until(pilot, lambda: app.dispatches["E2E-001#1"].worktree_removed, 5)
            await pilot.press("g")
            await until(pilot, lambda: type(app.screen).__name__ == "PatchScreen", 10, "patch")
            await until(pilot, lambda: app.screen.patch is not None, 10, "the patch read")  # type: ignore[attr-defined]
            assert "worktree removed" in app.screen.patch.source  # type: ignore[attr-defined]
            assert [f.path for f in app.screen.patch.files] == ["agent-output.txt"]  # type: ignore[attr-defined]
            await pilot.press("escape")
            assert "worktree removed (branch kept)" in screen_text(app)
    finally:
        close_app(app)
    assert "claude/e2e-001" in git(git_repo, "branch", "--list", "claude/*")  # branch kept


def fake_claude(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, first_run: str) -> None:
    """tests/helpers/fake_claude.py as the agent: its first run as told, a resumed run
    commits and its PR merges; every prompt recorded in tmp_path/prompts.txt."""
    from tests.conftest import HELPERS

    monkeypatch.setenv("CHUMP_CLAUDE_BIN", str(HELPERS / "fake_claude.py"))
    monkeypatch.setenv("FAKE_CLAUDE_MODE", first_run)
    monkeypatch.setenv("FAKE_CLAUDE_RESUME_PR", "MERGED")
    monkeypatch.setenv("FAKE_CLAUDE_PROMPTS", str(tmp_path / "prompts.txt"))


async def test_follow_up_stops_a_running_agent_and_resumes_it_on_the_same_card(
        git_repo: Path, stub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    fake_claude(monkeypatch, tmp_path, first_run="hang")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d", "y")
            await until(pilot, lambda: (app.dispatches.get("E2E-001#1") is not None
                                        and app.dispatches["E2E-001#1"].session_id != ""),
                        20, "the agent's session")
            first_pid = app.dispatches["E2E-001#1"].pid
            await pilot.press("f")
            await until(pilot, lambda: type(app.screen).__name__ == "FollowUp", 5, "dialog")
            assert "Its agent stops now" in screen_text(app)
            await pilot.press(*"Add a test", "ctrl+j", *"then open the PR")
            await pilot.press("enter")
            await until(pilot, lambda: app.dispatches["E2E-001#1"].label() == "SHIPPED", 30,
                        "shipped after the follow-up")
            row = app.dispatches["E2E-001#1"]
            assert row.run == 2 and row.pid != first_pid and list(app.dispatches) == [
                "E2E-001#1"]
            await until(pilot, lambda: "follow-up 2" in screen_text(app), 5, "the card says so")
    finally:
        close_app(app)
    said = (tmp_path / "prompts.txt").read_text()
    assert "Add a test\nthen open the PR" in said


async def test_patch_view_moves_between_files_searches_and_sends_a_review_note(
        git_repo: Path, stub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    fake_claude(monkeypatch, tmp_path, first_run="no_pr")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d", "y")
            await until(pilot, lambda: app.dispatches.get("E2E-001#1") is not None
                        and app.dispatches["E2E-001#1"].exit_code == 0, 20, "the first run")
            worktree = Path(app.dispatches["E2E-001#1"].worktree)
            (worktree / "b-notes.txt").write_text("alpha\nneedle here\n")
            (worktree / "c-notes.txt").write_text("another needle\n")
            git(worktree, "add", "b-notes.txt", "c-notes.txt")
            await pilot.press("g")
            await until(pilot, lambda: getattr(app.screen, "patch", None) is not None, 10,
                        "the patch read")
            screen = app.screen
            assert len(screen.patch.files) == 3  # type: ignore[attr-defined]
            await pilot.press("n")
            assert screen.current == 1  # type: ignore[attr-defined]
            await pilot.press("n", "n", "p")
            assert screen.current == 1  # type: ignore[attr-defined]
            await pilot.press("slash", *"needle", "enter")
            await until(pilot, lambda: "match 1 of 2" in screen_text(app), 5, "a match")
            assert screen.current == 0  # type: ignore[attr-defined]  # b-notes.txt
            await pilot.press("enter")
            await until(pilot, lambda: "match 2 of 2" in screen_text(app), 5, "the next")
            assert screen.current == 1  # type: ignore[attr-defined]  # c-notes.txt
            await pilot.press("escape")  # the search ends, the view stays
            assert app.screen is screen
            await pilot.press("f")
            await until(pilot, lambda: type(app.screen).__name__ == "FollowUp", 5, "dialog")
            assert "Review of your patch (c-notes.txt):" in screen_text(app)
            await pilot.press(*" rename the needle", "enter")
            await until(pilot, lambda: app.dispatches["E2E-001#1"].label() == "SHIPPED", 30,
                        "shipped after the review")
    finally:
        close_app(app)
    assert "Review of your patch (c-notes.txt):\n rename the needle" in (
        tmp_path / "prompts.txt").read_text()
