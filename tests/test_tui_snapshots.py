"""Snapshot tests of every screen, from the frozen test factory (fixed size, clock, no blink)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from chump_tui.monitor import DispatchOutcome
from chump_tui.pr_providers import PrStatus
from chump_tui.tui.screens.confirm_kill import ConfirmKill
from chump_tui.tui.screens.quit_dialog import QuitDialog
from tests.tui_factory import (
    claude_events,
    every_state,
    frozen_app,
    record,
    stop_idle_children,
)

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
    assert snap_compare(frozen_app(every_state()), press=["m", "ctrl+k"], terminal_size=SIZE)


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


@pytest.fixture
def no_idle_children() -> Iterator[None]:
    yield
    stop_idle_children()


def test_monitor_live_activity(snap_compare: Any) -> None:
    running = record("DEMO-001", "running", elapsed=95, harness="claude")
    assert snap_compare(frozen_app([(running, claude_events())]), press=["m"],
                        terminal_size=SIZE)


def test_monitor_quiet_card(snap_compare: Any, no_idle_children: None) -> None:
    quiet = record("DEMO-005", "running", elapsed=200, harness="claude")
    app = frozen_app(quiet=(quiet, claude_events(1), 75))
    assert snap_compare(app, press=["m"], terminal_size=SIZE)


def test_summary_with_costs(snap_compare: Any) -> None:
    rows = [
        (record("DEMO-001", "ended", elapsed=400, harness="claude", turns=7, tokens_in=58_200,
                tokens_out=1_800, cost_usd=0.2022, outcome=DispatchOutcome.shipped(2001),
                pr=PrStatus(2001, "MERGED")), []),
        (record("DEMO-003", "ended", elapsed=60, harness="claude", turns=4, tokens_in=23_600,
                tokens_out=1_000, cost_usd=0.086, agent_error="cannot build the workspace",
                outcome=DispatchOutcome.killed("exit code 1")), []),
        (record("DEMO-005", "ended", elapsed=700, harness="claude", turns=4, tokens_in=24_000,
                tokens_out=1_300, outcome=DispatchOutcome.killed("no output for 600s")), []),
    ]
    assert snap_compare(frozen_app(rows), press=["s"], terminal_size=SIZE)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_running_cards_show_their_numbers_at_every_size(snap_compare: Any,
                                                        size: tuple[int, int]) -> None:
    """A running card's turns, tokens and (estimated) cost on a line of their own, and two
    cards in view even at 80x24."""
    running = record("DEMO-001", "running", elapsed=95, harness="claude")
    second = record("DEMO-002", "running", elapsed=40, harness="claude")
    assert snap_compare(frozen_app([(running, claude_events()), (second, claude_events(1))]),
                        press=["m"], terminal_size=size)


def ended_claude_attempt() -> Any:
    return record("DEMO-003", "ended", elapsed=600, harness="claude", turns=4,
                  tokens_in=23_600, tokens_out=1_000, cost_usd=0.086,
                  session_id="b0db300b-6798-4bd1-9a55-c3f0f4a2e1d7",
                  agent_error="cannot build the workspace: a dependency is missing",
                  outcome=DispatchOutcome.killed("exit code 1"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_follow_up_dialog(snap_compare: Any, size: tuple[int, int]) -> None:
    from chump_tui.tui.screens.follow_up import FollowUp

    d = ended_claude_attempt()

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("m")
        await pilot.app.push_screen(FollowUp(d))
        await pilot.press(*"The build fails: add tokio", "ctrl+j", *"to Cargo.toml, then rerun.")

    assert snap_compare(frozen_app([(d, [])]), run_before=run_before, terminal_size=size)


def a_patch() -> Any:
    from chump_tui.patch import Patch, PatchFile

    first = PatchFile("src/retry.rs", 6, 1, [
        "diff --git a/src/retry.rs b/src/retry.rs", "index 1c81012..2d7e3f4 100644",
        "--- a/src/retry.rs", "+++ b/src/retry.rs", "@@ -10,3 +10,8 @@ pub fn call()",
        "-    let answer = client.send(request)?;", "+    let mut tries = 0;",
        "+    let answer = loop {", "+        match client.send(request.clone()) {",
        "+            Err(e) if e.is_5xx() && tries < 3 => tries += 1,",
        "+            other => break other?,", "+        }", "     Ok(answer)"])
    second = PatchFile("tests/retry.rs", 4, 0, [
        "diff --git a/tests/retry.rs b/tests/retry.rs", "new file mode 100644",
        "--- /dev/null", "+++ b/tests/retry.rs", "@@ -0,0 +1,4 @@", "+#[test]",
        "+fn retries_a_5xx_three_times() {", "+    assert_eq!(retry_count(), 3);", "+}"])
    return Patch("claude/demo-003 (its worktree, uncommitted changes too) against origin/main",
                 [first, second])


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_patch_view_with_a_search(snap_compare: Any, size: tuple[int, int]) -> None:
    from pathlib import Path

    from chump_tui.tui.screens.patch_view import PatchScreen

    d = ended_claude_attempt()

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("m")
        await pilot.app.push_screen(PatchScreen(d, Path("/repo"), "origin/main",
                                                on_review=lambda note: None, patch=a_patch()))
        await pilot.press("slash", *"retry", "enter", "enter")

    assert snap_compare(frozen_app([(d, [])]), run_before=run_before, terminal_size=size)
