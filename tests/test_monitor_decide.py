"""decide_tick and the deadline table, ported from the seed's monitor tests.

One deliberate change (PRODUCT.md): past the soft deadline with the agent
still running is MarkStalled (a warning; we keep watching) instead of the
seed's terminal Stalled. Stalled stays terminal when no process runs.
"""

from __future__ import annotations

from chump_tui.monitor import (
    DispatchOutcome,
    Done,
    KeepGoing,
    KillThenDone,
    MarkStalled,
    decide_tick,
    soft_deadline_seconds,
)
from chump_tui.pr_providers import PrStatus


def pr(n: int, state: str) -> PrStatus:
    return PrStatus(n, state)


def test_soft_deadline_table() -> None:
    assert soft_deadline_seconds("s") == 20 * 60
    assert soft_deadline_seconds("M") == 60 * 60
    assert soft_deadline_seconds("L") == 180 * 60
    assert soft_deadline_seconds("xl") == 360 * 60
    assert soft_deadline_seconds("weird") == 60 * 60
    assert soft_deadline_seconds("") == 60 * 60


def test_shipped_when_pr_merged() -> None:
    assert decide_tick(pr(42, "MERGED"), 0, 100, 1000, None) == Done(DispatchOutcome.shipped(42))


def test_ci_failed_when_pr_closed() -> None:
    assert decide_tick(pr(7, "CLOSED"), 0, 100, 1000, None) == Done(DispatchOutcome.ci_failed(7))


def test_keep_going_when_pr_open_within_deadline() -> None:
    assert decide_tick(pr(99, "OPEN"), 0, 100, 1000, None) == KeepGoing()


def test_keep_going_no_pr_within_deadline() -> None:
    assert decide_tick(None, 0, 100, 1000, None) == KeepGoing()


def test_stalled_no_pr_past_soft_deadline_without_process() -> None:
    assert decide_tick(None, 0, 1500, 1000, None) == Done(DispatchOutcome.stalled())


def test_stalled_is_a_warning_while_the_agent_runs() -> None:
    # Changed from the seed: the agent stays watched (it may still open a PR).
    assert decide_tick(None, 0, 1500, 1000, None, agent_running=True) == MarkStalled()


def test_kill_no_pr_past_2x_soft_deadline() -> None:
    d = decide_tick(None, 0, 2500, 1000, None, agent_running=True)
    assert isinstance(d, KillThenDone)
    assert d.reason == "soft-deadline exceeded (1000s × 2)"


def test_killed_when_child_exits_nonzero() -> None:
    assert decide_tick(None, 0, 100, 1000, 2) == Done(DispatchOutcome.killed("exit code 2"))


def test_nonzero_exit_wins_over_merged_pr() -> None:
    assert decide_tick(pr(1, "MERGED"), 0, 100, 1000, 1) == Done(DispatchOutcome.killed("exit code 1"))


def test_clean_exit_without_pr_keeps_going_until_deadline() -> None:
    assert decide_tick(None, 0, 100, 1000, 0) == KeepGoing()
    assert decide_tick(None, 0, 1500, 1000, 0) == Done(DispatchOutcome.stalled())


def test_open_pr_is_never_killed_or_stalled() -> None:
    for now in (1500, 9_999, 10**9):
        assert decide_tick(pr(11, "OPEN"), 0, now, 1000, None, agent_running=True) == KeepGoing()


def test_outcome_debug_matches_rust() -> None:
    assert DispatchOutcome.shipped(3).debug() == "Shipped(3)"
    assert DispatchOutcome.ci_failed(4).debug() == "CiFailed(4)"
    assert DispatchOutcome.stalled().debug() == "Stalled"
    assert DispatchOutcome.killed('exit "1"').debug() == 'Killed("exit \\"1\\"")'
