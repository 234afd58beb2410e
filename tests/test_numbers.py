"""Numbers from outside never crash anything: the one module they pass through
(chump_tui.numbers), the four harnesses' parsers fed extreme values (hypothesis), saved
rows with unusable values set aside one by one, and the console, plain mode and the next
start over an agent that reports a 401-digit token count."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chump_tui import numbers
from chump_tui.agent_process import LogFollower, OutputLog
from chump_tui.agent_streams.decoder import decode
from chump_tui.dispatch_record import Dispatch, fmt_duration
from chump_tui.harness import stream_format
from chump_tui.log_lines import Line
from chump_tui.session_store import SessionStore
from chump_tui.summary_export import export_summary, summary_rows
from tests.conftest import HELPERS, wait_for

HUGE = 10**400  # json.dumps writes it; json.loads reads it back (401 digits < 4300)

EXTREMES: list[Any] = [HUGE, -HUGE, -1, 0, 1, 2**62, 2**63, 1.5e308, -1e308, float("nan"),
                       float("inf"), float("-inf"), True, False, "123", "", None, [1], {"a": 1},
                       0.5, -0.0, 12.0, 1e-300]

extreme = st.sampled_from(EXTREMES) | st.integers() | st.floats(allow_nan=True,
                                                                 allow_infinity=True)


# --------------------------------------------------------------------- the module
@pytest.mark.parametrize(("value", "expected"), [
    (12, 12), (12.0, 12), (12.7, 12), (0, 0), (numbers.MAX_COUNT, numbers.MAX_COUNT),
    (HUGE, None), (-1, None), (1.5e308, None), (float("nan"), None), (float("inf"), None),
    (True, None), ("12", None), (None, None), ([1], None)])
def test_count(value: object, expected: int | None) -> None:
    assert numbers.count(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (4242, 4242), (-1, None), (0, None), (1, None), (2**31, None), (4242.0, 4242),
    (True, None), ("4242", None), (HUGE, None)])
def test_pid_refuses_what_would_signal_someone_else(value: object, expected: int | None) -> None:
    assert numbers.pid(value) == expected


def test_cost_time_and_duration() -> None:
    assert numbers.cost(0.04) == 0.04 and numbers.cost(0) == 0.0
    for bad in (-999.5, -0.01, float("nan"), float("inf"), HUGE, True, "0.1", 1e7):
        assert numbers.cost(bad) is None, bad
    now = 1_800_000_000.0
    assert numbers.timestamp(now - 5, now) == now - 5
    for bad in (-1e308, 1e308, -1, now + 20 * 365 * 86400, float("nan"), HUGE, False):
        assert numbers.timestamp(bad, now) is None, bad
    assert numbers.duration(0) == 0.0 and numbers.duration(-1) is None
    assert numbers.positive_duration(0) is None and numbers.positive_duration(60) == 60.0


@given(extreme)
def test_printing_never_raises(value: Any) -> None:
    assert isinstance(numbers.short_count(value), str)
    assert isinstance(numbers.dollars(value), str)
    assert isinstance(fmt_duration(value), str)
    assert 0 <= numbers.whole_seconds(value) <= numbers.MAX_DURATION_S


def test_huge_values_print_as_unknown_not_309_digits() -> None:
    assert numbers.short_count(1.5e308) == "?"
    assert numbers.short_count(HUGE) == "?"
    assert numbers.dollars(-999.5) == "-"
    assert fmt_duration(1e308) == fmt_duration(numbers.MAX_DURATION_S)


# --------------------------------------------------------------------- the parsers
def claude_events(n: Any) -> list[dict[str, Any]]:
    usage = {"input_tokens": n, "cache_creation_input_tokens": n, "cache_read_input_tokens": n,
             "output_tokens": n}
    return [
        {"type": "system", "subtype": "api_retry", "attempt": n},
        {"type": "assistant", "message": {"id": "m1", "usage": usage, "content": [
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}},
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "x", "is_error": n}]}},
        {"type": "result", "subtype": "success", "num_turns": n, "total_cost_usd": n,
         "usage": usage, "duration_ms": n, "result": "done"},
    ]


def codex_events(n: Any) -> list[dict[str, Any]]:
    return [
        {"type": "item.started", "item": {"id": "c1", "type": "command_execution",
                                          "command": "ls"}},
        {"type": "item.completed", "item": {"id": "c1", "type": "command_execution",
                                            "aggregated_output": "", "exit_code": n,
                                            "status": "completed"}},
        {"type": "turn.completed", "usage": {"input_tokens": n, "cached_input_tokens": n,
                                             "output_tokens": n}},
    ]


def opencode_events(n: Any) -> list[dict[str, Any]]:
    return [
        {"type": "tool_use", "part": {"tool": "bash", "callID": "o1", "state": {
            "status": "completed", "input": {"command": "ls"}, "output": "x",
            "metadata": {"exit": n}}}},
        {"type": "step_finish", "part": {"tokens": {"input": n, "output": n, "reasoning": n,
                                                    "cache": {"read": n, "write": n}},
                                         "cost": n}},
    ]


def gemini_events(n: Any) -> list[dict[str, Any]]:
    return [
        {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "g1",
         "parameters": {"command": "ls"}},
        {"type": "tool_result", "tool_id": "g1", "status": "success", "output": "x"},
        {"type": "result", "status": "success", "stats": {
            "input_tokens": n, "output_tokens": n, "duration_ms": n, "tool_calls": n}},
    ]


HARNESS_EVENTS = {"claude": claude_events, "codex": codex_events, "opencode": opencode_events,
                  "gemini": gemini_events}


def lines_of(events: list[dict[str, Any]]) -> list[Line]:
    out = []
    for event in events:
        text = json.dumps(event)  # NaN and Infinity as JSON's common extension writes them
        out.append(Line(text, len(text)))
    return out


@pytest.mark.parametrize("harness", sorted(HARNESS_EVENTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(extreme, min_size=1, max_size=4))
def test_any_number_in_any_field_of_any_harness(harness: str, values: list[Any]) -> None:
    fmt = stream_format(harness)
    output = OutputLog()
    for value in values:
        shown = output.record(decode(lines_of(HARNESS_EVENTS[harness](value)), fmt))
        assert all(isinstance(line, str) for line in shown)
    act = output.activity()
    assert act.tokens_in >= 0 and act.tokens_out >= 0 and act.turns >= 0
    assert act.cost_usd is None or (math.isfinite(act.cost_usd) and act.cost_usd >= 0)
    assert isinstance(act.counters(), str)
    assert not any("skipped" in line for line in output.tail())  # refused, never raised


def test_a_401_digit_usage_is_unknown_not_a_crash() -> None:
    output = OutputLog()
    output.record(decode(lines_of(claude_events(HUGE)), stream_format("claude")))
    act = output.activity()
    assert act.tokens_in == 0 and act.turns == 1 and act.cost_usd is None
    assert "■ done" in "\n".join(output.tail())


def test_one_event_that_cannot_be_shown_never_stops_the_follower(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong inside one event, later lines are read and the cap holds."""
    import chump_tui.agent_process as agent_process

    real_render = agent_process.render

    def render(event: Any) -> list[str]:
        if "poison" in str(event):
            raise OverflowError("integer too large")
        return real_render(event)

    monkeypatch.setattr(agent_process, "render", render)
    monkeypatch.setattr(agent_process, "LOG_CAP_BYTES", 2048)
    log = tmp_path / "agent.log"
    log.write_bytes(b"before\npoison\n" + b"filler line\n" * 300 + b"after\n")
    output = OutputLog()
    done = [False]
    follower = LogFollower(log, output, None, lambda: done[0], may_cap=True).start()
    wait_for(lambda: "after" in output.tail(), 10, "the lines after the bad one")
    done[0] = True
    assert follower.join(10)
    tail = output.tail()
    assert "before" in tail and any("skipped a PlainLine event" in t for t in tail)
    assert any("truncated" in t for t in tail)  # the cap still ran after the bad event
    assert log.stat().st_size < 2048


# --------------------------------------------------------------------- saved rows
def row_json(tmp_path: Path, key: str, **fields: Any) -> dict[str, Any]:
    gap = key.partition("#")[0]
    slug = gap.lower()
    row: dict[str, Any] = {
        "key": key, "gap_id": gap, "title": "t", "priority": "P1", "effort": "s",
        "branch": f"claude/{slug}", "worktree": str(tmp_path / ".claude" / "worktrees" / slug),
        "attempt": 1, "started_at": 1_790_000_000.0, "soft_deadline_s": 60.0,
        "phase": "ended", "ended_at": 1_790_000_060.0, "pid": 4242, "process_start": 1.5e9,
        "turns": 3, "tokens_in": 10, "tokens_out": 5, "cost_usd": 0.5, "exit_code": 0,
        "outcome": {"kind": "shipped", "pr_number": 7, "reason": ""},
        "reflection_written": True,
    }
    row.update(fields)
    return row


NUMBER_FIELDS = ["started_at", "soft_deadline_s", "attempt", "ended_at", "pid",
                 "process_start", "kill_deadline", "exit_code", "turns", "tokens_in",
                 "tokens_out", "cost_usd"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(NUMBER_FIELDS), value=extreme,
       phase=st.sampled_from(["running", "ended", "killing", "stalled"]))
def test_a_row_loads_usable_or_not_at_all(tmp_path: Path, field: str, value: Any,
                                          phase: str) -> None:
    from chump_tui.tui.widgets.dispatch_card import card_lines

    data = row_json(tmp_path, "N-1#1", phase=phase, **{field: value})
    try:
        row = Dispatch.from_json(json.loads(json.dumps(data)))
    except ValueError:
        return
    now = 1_790_000_100.0
    for draw in (row.label, row.reason, lambda: fmt_duration(row.duration_s(now)),
                 lambda: card_lines(row, now, ["x"]), lambda: summary_rows([row], now)):
        draw()
    assert summary_rows([row], now)[0]["outcome"] != "UNREADABLE"
    assert row.duration_s(now) >= 0


def plant(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "dispatches": rows}))


def test_unusable_rows_are_set_aside_one_by_one(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions" / "chump-tui", tmp_path)
    plant(store.state_path, [
        row_json(tmp_path, "P-1#1", phase="running", pid=-1, outcome=None,
                 reflection_written=False),
        row_json(tmp_path, "P-2#1", started_at=-1e308, ended_at=1e308),
        row_json(tmp_path, "P-3#1", tokens_in=HUGE),
        row_json(tmp_path, "P-4#1", cost_usd=-999.5),
        row_json(tmp_path, "OK-1#1"),
    ])
    rows, warnings = store.load()
    assert [r.key for r in rows] == ["OK-1#1"]
    for n, (key, what) in enumerate([("P-1#1", "'pid'"), ("P-2#1", "'started_at'"),
                                     ("P-3#1", "'tokens_in'"), ("P-4#1", "'cost_usd'")], 1):
        assert any(f"row {n} ({key})" in w and what in w and str(store.state_path) in w
                   for w in warnings), warnings
    assert any("kept as state.refused-" in w for w in warnings)
    # settled.jsonl the same way: a bad line is left out, the rest load.
    good = row_json(tmp_path, "S-1#1")
    store.settled_path.write_text(json.dumps(row_json(tmp_path, "S-2#1", pid=0)) + "\n"
                                  + "{broken\n" + json.dumps(good) + "\n")
    rows, warnings = SessionStore(store.directory, tmp_path).load()
    assert {r.key for r in rows} >= {"S-1#1"} and "S-2#1" not in {r.key for r in rows}
    assert any("line 1 (S-2#1)" in w for w in warnings)
    assert any("line 2: not a JSON row" in w for w in warnings)


def test_export_of_extreme_but_loaded_rows(tmp_path: Path) -> None:
    row = Dispatch.from_json(row_json(tmp_path, "E-1#1", tokens_in=numbers.MAX_COUNT,
                                      soft_deadline_s=numbers.MAX_DURATION_S,
                                      cost_usd=numbers.MAX_COST_USD))
    paths = export_summary([row], tmp_path / "out", 1_790_000_100.0, "db")
    assert "1000.0G" in paths[1].read_text()


# --------------------------------------------------------------------- end to end
HUGE_AGENT = f"""#!/bin/sh
# A claude-like agent whose usage report holds a 401-digit count, then works as usual.
printf '%s\\n' '{{"type":"assistant","message":{{"id":"m1","usage":{{"input_tokens":{HUGE},"output_tokens":{HUGE}}},"content":[{{"type":"text","text":"counting"}}]}}}}'
printf '%s\\n' '{{"type":"result","subtype":"success","num_turns":{HUGE},"total_cost_usd":-999.5,"result":"ok"}}'
exec {HELPERS / 'fake_agent.sh'} "$@"
"""


def huge_agent(tmp_path: Path) -> Path:
    script = tmp_path / "huge_agent.sh"
    script.write_text(HUGE_AGENT)
    script.chmod(0o755)
    return script


TWO_GAPS = """gaps:
  - {id: NUM-001, title: one, priority: P1, effort: s, status: open}
  - {id: NUM-002, title: two, priority: P1, effort: s, status: open}
"""


def test_plain_watch_over_a_401_digit_agent_prints_its_summary(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path) -> None:
    (git_repo / "gaps.yaml").write_text(TWO_GAPS)
    env = {**os.environ, "CHUMP_CLAUDE_BIN": str(huge_agent(tmp_path))}
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--watch", "--tick", "0.2", "--backlog", "gaps.yaml"],
                          cwd=git_repo, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and done.returncode == 0, done.stdout + done.stderr
    assert "shipped=2  ci_failed=0" in done.stdout
    assert "$-999" not in done.stdout and "0" * 300 not in done.stdout
    # The next start in that repo reads the saved rows without a traceback.
    again = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                            "--backlog", "gaps.yaml"], cwd=git_repo, env=env,
                           capture_output=True, text=True, timeout=60)
    assert "Traceback" not in again.stderr and again.returncode == 0, again.stderr


def test_planted_rows_are_set_aside_and_execute_runs(git_repo: Path,
                                                     stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(TWO_GAPS)
    state = git_repo / "sessions" / "chump-tui" / "state.json"
    plant(state, [
        row_json(git_repo, "NUM-001#1", phase="running", pid=-1, outcome=None,
                 reflection_written=False),
        row_json(git_repo, "NUM-002#1", phase="running", started_at=-1e308, ended_at=1e308,
                 outcome=None, reflection_written=False),
        row_json(git_repo, "NUM-009#1", phase="running", outcome=None,
                 reflection_written=False, pid=None, exit_code=None),
    ])
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--watch", "--tick", "0.2", "--max-parallel", "3", "--backlog",
                           "gaps.yaml"], cwd=git_repo, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and done.returncode == 0, done.stdout + done.stderr
    assert "row 1 (NUM-001#1): field 'pid' is unusable (-1)" in done.stderr
    assert "row 2 (NUM-002#1): field 'started_at' is unusable" in done.stderr
    assert "DISPATCHED: NUM-001" in done.stdout and "DISPATCHED: NUM-002" in done.stdout
    assert list(state.parent.glob("state.refused-*.json"))


async def test_the_console_stays_up_over_a_401_digit_agent(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chump_tui.tui.screens.monitor import MonitorScreen
    from chump_tui.tui.widgets.dispatch_card import DispatchCard
    from tests.tui_factory import close_app, live_app, until

    monkeypatch.setenv("CHUMP_CLAUDE_BIN", str(huge_agent(tmp_path)))
    monkeypatch.setenv("FAKE_AGENT_MODE", "slow")
    monkeypatch.setenv("FAKE_AGENT_SECONDS", "30")
    (git_repo / "gaps.yaml").write_text(TWO_GAPS)
    app = live_app(git_repo, git_repo / "gaps.yaml", kill_grace_s=0.5)
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            app.dispatch_gaps(list(app.setup.backlog.gaps))
            await pilot.press("m")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), 5)

            def cards_drawn_with_counts() -> bool:
                cards = list(app.screen.query(DispatchCard))
                return len(cards) == 2 and all("▶ done" in c.drawn_text()
                                               and "\n1 turn" in c.drawn_text() for c in cards)
            await until(pilot, cards_drawn_with_counts, 30,
                        "both cards drawn with the agent's counts: " + "\n".join(
                            c.drawn_text() for c in app.screen.query(DispatchCard)))
            text = "\n".join(c.drawn_text() for c in app.screen.query(DispatchCard))
            assert "cannot draw" not in text and "0" * 300 not in text
            await pilot.press("right", "left", "s", "m")  # the keys still work
            assert app.is_running
            app.engine.stop_all("test over", grace_s=0.5)
    finally:
        close_app(app)
