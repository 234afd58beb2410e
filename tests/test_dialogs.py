"""Every confirmation: Enter presses the default button (the safe one where the action
destroys something), Esc cancels, Tab moves between buttons, a hint names what Enter does;
every way out asks when agents run."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button

from chump_tui.tui.app import ChumpApp
from chump_tui.tui.screens.confirm import Confirm
from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
from chump_tui.tui.screens.confirm_kill import ConfirmKill
from chump_tui.tui.screens.monitor import MonitorScreen
from chump_tui.tui.screens.quit_dialog import QuitDialog
from tests.test_cli_e2e import FOUR_GAPS
from tests.tui_factory import close_app, live_app, screen_text, until

SIZE = (140, 44)


def make(repo: Path, **kw: object) -> ChumpApp:
    (repo / "gaps.yaml").write_text(FOUR_GAPS)
    return live_app(repo, repo / "gaps.yaml", **kw)  # type: ignore[arg-type]


def focused_button(app: ChumpApp) -> str:
    focused = app.screen.focused
    assert isinstance(focused, Button)
    return str(focused.id)


async def running_app(pilot: object, app: ChumpApp, n: int = 1) -> None:
    await pilot.press("d")  # type: ignore[attr-defined]
    await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")  # type: ignore[arg-type]
    await pilot.press("enter")  # type: ignore[attr-defined]
    await until(pilot, lambda: len(app.dispatches) == n and all(  # type: ignore[arg-type]
        d.phase == "running" for d in app.dispatches.values()), 20, "running")


async def test_dispatch_dialog_enter_dispatches(git_repo: Path, stub_env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a", "d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
            assert focused_button(app) == "confirm"
            assert "Enter: Dispatch" in screen_text(app)
            await pilot.press("enter")
            await until(pilot, lambda: len(app.dispatches) == 2, 10, "two dispatched")
            assert isinstance(app.screen, MonitorScreen)
            app.engine.stop_all("test", grace_s=0.2)
    finally:
        close_app(app)


async def test_dispatch_dialog_esc_and_tab_enter_cancel(git_repo: Path,
                                                        stub_env: dict[str, str]) -> None:
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
            await pilot.press("escape")
            assert not isinstance(app.screen, ConfirmDispatch)
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
            await pilot.press("tab")
            assert focused_button(app) == "cancel"
            assert "Enter: Cancel" in screen_text(app)
            await pilot.press("enter")
            await pilot.pause()
            assert not app.dispatches
    finally:
        close_app(app)


async def test_kill_dialog_enter_cancels_y_kills_and_closes(
        git_repo: Path, stub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    app = make(git_repo, kill_grace_s=30)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await running_app(pilot, app)
            await pilot.press("ctrl+k")
            await until(pilot, lambda: isinstance(app.screen, ConfirmKill), 5, "kill dialog")
            assert focused_button(app) == "cancel"
            await pilot.press("enter")
            await pilot.pause()
            assert app.dispatches["E2E-001#1"].phase == "running"
            await pilot.press("ctrl+k", "y")
            await until(pilot, lambda: app.dispatches["E2E-001#1"].phase == "killing", 5,
                        "killing")
            assert isinstance(app.screen, MonitorScreen)  # the dialog closed as the kill began
            await until(pilot, lambda: "KILLING · SIGKILL in" in screen_text(app), 5,
                        "the card's countdown")
            # ctrl+k on a card being killed offers SIGKILL now, instead of the 30 s grace.
            await pilot.press("ctrl+k")
            await until(pilot, lambda: isinstance(app.screen, ConfirmKill), 5, "force dialog")
            assert "SIGKILL E2E-001 #1 now?" in screen_text(app)
            await pilot.press("y")
            await until(pilot, lambda: app.dispatches["E2E-001#1"].phase == "ended", 10,
                        "ended well before the grace")
    finally:
        close_app(app)


async def test_quit_dialog_enter_leaves_agents_running(git_repo: Path, stub_env: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from chump_tui.agent_process import group_has_live_member

    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await running_app(pilot, app)
            pid = app.dispatches["E2E-001#1"].pid
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitDialog), 5, "quit dialog")
            assert focused_button(app) == "leave"
            await pilot.press("enter")
            await until(pilot, lambda: not app.is_running, 5, "the console gone")
        assert app.quit_choice == "leave"
        assert pid is not None and group_has_live_member(pid)
    finally:
        app.engine.stop_all("test cleanup", grace_s=0.2)
        close_app(app)


@pytest.mark.parametrize("how", ["ctrl+q", "palette action"])
async def test_every_way_out_asks_when_agents_run(git_repo: Path, stub_env: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  how: str) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await running_app(pilot, app)
            if how == "ctrl+q":
                await pilot.press("ctrl+q")
            else:
                commands = [c for c in app.get_system_commands(app.screen)
                            if c.title.lower().startswith("quit")]
                assert len(commands) == 1  # listed once
                result = commands[0].callback()
                if result is not None:
                    await result  # type: ignore[misc]
            await until(pilot, lambda: isinstance(app.screen, QuitDialog), 5, "quit dialog")
            assert app.is_running
            await pilot.press("escape")
            app.engine.stop_all("test", grace_s=0.2)
    finally:
        close_app(app)


async def test_remove_worktree_enter_keeps_it(git_repo: Path, stub_env: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "fail")
    app = make(git_repo)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d", "enter")
            await until(pilot, lambda: app.dispatches.get("E2E-001#1") is not None
                        and app.dispatches["E2E-001#1"].phase == "ended", 20, "ended")
            await pilot.press("m", "x")
            await until(pilot, lambda: isinstance(app.screen, Confirm), 5, "confirm")
            assert focused_button(app) == "cancel"
            await pilot.press("enter")
            await pilot.pause()
            assert (git_repo / ".claude/worktrees/e2e-001").is_dir()
    finally:
        close_app(app)
