"""Snapshot tests of every screen, from the frozen test factory (fixed size, clock, no blink)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from chump_tui.tui.screens.confirm_kill import ConfirmKill
from chump_tui.tui.screens.quit_dialog import QuitDialog
from tests.tui_factory import every_state, frozen_app

SIZE = (140, 44)
MONITOR_SIZE = (160, 50)


def test_backlog_default(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(), terminal_size=SIZE)


def test_backlog_filtered_pickable(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(), press=["f"], terminal_size=SIZE)


def test_backlog_detail_of_blocked_gap(snap_compare: Any) -> None:
    # DEMO-008 needs DEMO-004 and DEMO-002: row 8.
    assert snap_compare(frozen_app(), press=["down"] * 7, terminal_size=SIZE)


def test_backlog_search(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(), press=["slash", *"retry", "enter"], terminal_size=SIZE)


def test_dispatch_confirmation(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(), press=["space", "down", "down", "down", "space", "d"],
                        terminal_size=SIZE)


def test_dispatch_confirmation_dry_run(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(dry_run=True), press=["a", "d"], terminal_size=SIZE)


def test_monitor_every_state(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(every_state()), press=["m"], terminal_size=MONITOR_SIZE)


def test_kill_confirmation(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(every_state()), press=["m", "k"], terminal_size=SIZE)


def test_kill_countdown(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("m")
        app = pilot.app
        killing = app.dispatches["DEMO-008#1"]  # type: ignore[attr-defined]
        dialog = ConfirmKill(killing, 30, lambda: True)
        await app.push_screen(dialog)
        dialog.action_kill()
        await pilot.pause()

    assert snap_compare(frozen_app(every_state()), run_before=run_before, terminal_size=SIZE)


def test_summary(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(every_state()), press=["s"], terminal_size=SIZE)


def test_help(snap_compare: Any) -> None:
    assert snap_compare(frozen_app(every_state()), press=["m", "question_mark"],
                        terminal_size=SIZE)


def test_quit_dialog(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("m")
        await pilot.app.push_screen(QuitDialog(4, 30))

    assert snap_compare(frozen_app(every_state()), run_before=run_before, terminal_size=SIZE)
