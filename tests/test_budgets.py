"""Budgets against the real claude CLI and its scripted model server: an agent whose turns
cost more than --budget-usd is stopped with the reason and makes no further model request;
past --fleet-budget-usd nothing new is dispatched. Plus the arithmetic on rows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from chump_tui.agent_process import OutputLog
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.budgets import Budgets
from chump_tui.engine.config import EngineConfig
from chump_tui.engine.table import DispatchTable, Live
from chump_tui.events import Attention, EngineEvent
from tests.harness_rigs import RIGS, serve
from tests.model_servers.base import ScriptedServer
from tests.model_servers.plan import Step

TWO = """gaps:
  - {id: BU-001, title: one, priority: P1, effort: s, status: open}
  - {id: BU-002, title: two, priority: P1, effort: s, status: open}
"""


def test_a_real_claude_over_its_budget_is_stopped_and_the_fleet_budget_stops_dispatch(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path,
        model_servers: list[ScriptedServer]) -> None:
    rig = RIGS["claude"]

    def forever(gap: str, turn: int) -> Step:  # a tool call every turn, never done
        return rig.shell(f"sleep 0.2; echo step {turn}")

    model, server = serve(rig, forever, model_servers)
    (git_repo / "gaps.yaml").write_text(TWO)
    # A model whose list price is known: the spend is estimated from its tokens as it runs
    # (claude says dollars only at its end, and a stopped agent never gets there).
    env = {**os.environ, **stub_env, **rig.environment(server.url, tmp_path),
           "ANTHROPIC_MODEL": "claude-sonnet-4-5"}
    done = subprocess.run(
        [sys.executable, "-m", "chump_tui", "--no-tui", "--execute", "--watch",
         "--continuous", "--max-parallel", "1", "--backlog", "gaps.yaml", "--tick", "0.5",
         "--budget-usd", "0.1", "--fleet-budget-usd", "0.1", "--kill-grace", "2"],
        cwd=git_repo, env=env, capture_output=True, text=True, timeout=180)
    requests_at_the_end = len(model.main_requests)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"KILLED\s+claude/bu-001\s+budget \$0\.1000 reached", done.stdout), \
        done.stdout + done.stderr[-2000:]
    warned = done.stderr.find("[budget] BU-001#1 has spent 8")  # told at 80 % first
    assert 0 <= warned < done.stderr.find("[budget] BU-001#1: budget $0.1000 reached")
    assert "the session's budget $0.1000 is spent" in done.stderr
    assert "claude/bu-002" not in done.stdout  # nothing new once the session's is spent
    assert all(gap == "BU-001" for gap, _ in model.main_requests)
    # Its agent is gone (its group was stopped), so no request can follow.
    assert not [p for p in psutil.process_iter(["environ"])
                if (p.info.get("environ") or {}).get("CHUMP_TUI_AGENT", "").endswith(
                    "bu-001-attempt1.log")]
    assert len(model.main_requests) == requests_at_the_end
    turns = int(re.search(r"claude/bu-001 #1  claude  (\d+) turns", done.stdout).group(1))
    spent = float(re.search(r"≈\$([\d.]+)", done.stdout.split("=== agents ===")[1]).group(1))
    assert 0.1 <= spent < 0.13 and turns < 30  # stopped at the budget, not long after


def row(**numbers: object) -> Dispatch:
    d = Dispatch(key="G-1#1", gap_id="G-1", title="t", priority="P1", effort="s",
                 branch="claude/g-1", worktree="", attempt=1, started_at=0.0,
                 soft_deadline_s=60, phase="running", harness="codex")
    for key, value in numbers.items():
        setattr(d, key, value)
    return d


@pytest.mark.parametrize("numbers, config, verdict, told", [
    ({"cost_usd": 0.39}, {"budget_usd": 0.5}, None, []),
    ({"cost_usd": 0.41}, {"budget_usd": 0.5}, None, ["82% of its budget $0.5000"]),
    ({"cost_usd": 0.5}, {"budget_usd": 0.5}, "budget $0.5000 reached", ["reached"]),
    ({"cost_usd": 0.6}, {"budget_usd": 0.5, "budget_action": "warn"}, None,
     ["reached (--budget-action warn: it goes on)"]),
    # No dollars said, no price known: tokens count.
    ({"model": "mystery-1", "tokens_in": 9000, "tokens_out": 1000}, {"budget_tokens": 10000},
     "budget 10.0k tokens reached", ["reached"]),
    ({"model": "mystery-1", "tokens_in": 9000}, {"budget_usd": 0.5}, None, []),
    # Dollars estimated from tokens where the price is known (gpt-5: $1.25 / $10 per M).
    ({"model": "gpt-5", "tokens_in": 400_000, "tokens_out": 1}, {"budget_usd": 0.5},
     "budget $0.5000 reached", ["reached"]),
])
def test_an_attempts_budget(numbers: dict[str, object], config: dict[str, object],
                            verdict: str | None, told: list[str]) -> None:
    table = DispatchTable(None, lambda: 0.0)
    events: list[EngineEvent] = []
    table.subscribe(events.append)
    budgets = Budgets(table, EngineConfig(**config))  # type: ignore[arg-type]
    live = Live(row(**numbers), OutputLog())
    table.add(live, "dispatched")
    with table.lock:
        assert budgets.attempt_over(live) == verdict
        assert budgets.attempt_over(live) == verdict  # asked again: told only once
    said = [e.text for e in events if isinstance(e, Attention)]
    assert len(said) == len(told) and all(t in s for t, s in zip(told, said, strict=True))


def test_a_follow_up_counts_against_the_attempts_budget() -> None:
    table = DispatchTable(None, lambda: 0.0)
    budgets = Budgets(table, EngineConfig(budget_usd=1.0))
    # Two runs: the row's totals add them (0.6 + 0.45), as Outcomes.sync_activity does.
    live = Live(row(run=2, earlier_cost_usd=0.6, cost_usd=1.05), OutputLog())
    table.add(live, "dispatched")
    with table.lock:
        assert budgets.attempt_over(live) == "budget $1.00 reached"
