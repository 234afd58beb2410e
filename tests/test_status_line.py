"""The status line's counts, kept one row at a time, equal the counts over every row."""

from __future__ import annotations

import dataclasses

from chump_tui.dispatch_record import Dispatch, DispatchOutcome
from chump_tui.tui.widgets.status_line import StatusTally, status_text


def row(n: int) -> Dispatch:
    return Dispatch(key=f"G-{n}#1", gap_id=f"G-{n}", title="t", priority="P1", effort="s",
                    branch=f"claude/g-{n}", worktree="", attempt=1, started_at=0.0,
                    soft_deadline_s=60, phase="running", pid=100 + n)


def test_counts_kept_row_by_row_equal_the_counts_of_all_rows() -> None:
    live = StatusTally()
    rows: dict[str, Dispatch] = {}

    def change(d: Dispatch) -> None:
        rows[d.key] = d
        live.update(d)

    for n in range(6):
        change(row(n))
    change(dataclasses.replace(rows["G-0#1"], exit_code=0))  # exited, waiting for its PR
    change(dataclasses.replace(rows["G-1#1"], phase="ended", cost_usd=0.25,
                               outcome=DispatchOutcome.shipped(7)))
    change(dataclasses.replace(rows["G-2#1"], phase="ended", cost_usd=0.5,
                               outcome=DispatchOutcome.killed("no output for 120s")))
    change(dataclasses.replace(rows["G-2#1"], cost_usd=1.0))  # a row changing again
    change(dataclasses.replace(rows["G-3#1"], phase="spawn_failed", error="no such file"))
    whole = StatusTally.of(rows.values())
    assert status_text(live, 3, None, True, 0, False).plain == \
        status_text(whole, 3, None, True, 0, False).plain
    text = status_text(live, 3, None, True, 0, False).plain
    assert text == ("2 running · 1 exited, waiting for a PR · 3 ended · killed 1 shipped 1 "
                    "spawn-failed 1 · next GitHub poll in 3s · continuous ON · spent $1.25")


def test_cards_shown_are_every_active_row_and_the_most_recent_ended_ones() -> None:
    from chump_tui.tui.screens.monitor import MAX_ENDED_CARDS, cards_to_show

    rows = {d.key: d for d in (row(n) for n in range(200))}
    for n in range(200):
        if n not in (3, 150, 199):  # an old agent still runs, and two recent ones
            key = f"G-{n}#1"
            rows[key] = dataclasses.replace(rows[key], phase="ended",
                                            outcome=DispatchOutcome.shipped(n))
    shown = cards_to_show(rows, StatusTally.of(rows.values()).active())
    ended = [k for k, d in rows.items() if not d.active][-MAX_ENDED_CARDS:]
    assert shown == [k for k in rows if k in ended or k in ("G-3#1", "G-150#1", "G-199#1")]


def test_queued_gaps_are_counted_and_named() -> None:
    from chump_tui.tui.widgets.status_line import StatusTally, status_text

    text = status_text(StatusTally(), 3.0, None, False, 0, False,
                       queued=["Q-1", "Q-2", "Q-3", "Q-4"]).plain
    assert "4 queued (Q-1, Q-2, Q-3 +1)" in text


def test_fleet_dispatches_waiting_for_a_host_are_counted_apart_from_running_agents() -> None:
    queued = dataclasses.replace(row(1), phase="dispatching", pid=None,
                                 waiting="waiting for a host: 2 up, 4/4 slots busy")
    taken = dataclasses.replace(row(2), phase="spawn_failed", pid=None,
                                error="taken by worker w2", taken_by="taken by worker w2")
    tally = StatusTally.of([row(0), queued, taken])
    assert tally.active() == 2 and tally.running() == 1
    assert status_text(tally, 3, None, False, 0, False).plain.startswith(
        "1 running · 1 waiting for a host · 1 ended · taken 1 ·")
