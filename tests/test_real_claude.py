"""The real ``claude`` CLI (npm @anthropic-ai/claude-code) as the agent, offline, against a
scripted Anthropic API on 127.0.0.1: it runs real Bash tool calls in real worktrees."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent_clis import agent_cli
from tests.conftest import git
from tests.model_servers.anthropic import AnthropicServer, bash
from tests.model_servers.base import ScriptedServer
from tests.model_servers.plan import Fail, Hang, Plan, Say, Step

FOUR = """gaps:
  - {id: RC-001, title: one, priority: P1, effort: s, status: open}
  - {id: RC-002, title: two, priority: P1, effort: s, status: open}
  - {id: RC-003, title: three, priority: P2, effort: s, status: open}
  - {id: RC-004, title: four, priority: P2, effort: s, status: open}
"""


def commit_step(gap: str) -> Step:
    return bash(f"echo {gap} > {gap}.txt && git add {gap}.txt && "
                f"git commit -qm 'work on {gap}' && echo committed", "commit the work")


def ship_plan(gap: str, turn: int) -> Step:
    if turn == 0:
        return commit_step(gap)
    if turn == 1:
        return bash("gh pr create --fill", "open the PR")
    return Say("101")


@pytest.fixture
def claude_bin() -> Path:
    return agent_cli("claude")


def claude_env(server: ScriptedServer, tmp_path: Path, claude: Path) -> dict[str, str]:
    env = {
        "CHUMP_CLAUDE_BIN": str(claude),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-config"),
    }
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"  # the CLI refuses --dangerously-skip-permissions as root
    return env


def start(model_servers: list[ScriptedServer], plan: Plan) -> tuple[AnthropicServer, ScriptedServer]:
    model = AnthropicServer(plan)
    server = model.start().__enter__()
    model_servers.append(server)
    return model, server


def plain(repo: Path, env: dict[str, str], *args: str, timeout: float = 240) -> \
        subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", *args], cwd=repo,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_plain_execute_watch_ships_four_gaps_with_real_commits(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer]) -> None:
    model, server = start(model_servers, ship_plan)
    (git_repo / "docs").mkdir()
    (git_repo / "docs" / "gaps.yaml").write_text(FOUR)
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--max-parallel", "4", "--tick", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    for gap in ("RC-001", "RC-002", "RC-003", "RC-004"):
        branch = f"claude/{gap.lower()}"
        assert re.search(rf"SHIPPED\s+{branch}\s+PR #\d+", done.stdout), done.stdout
        assert f"work on {gap}" in git(git_repo, "log", "--format=%s", branch)
        author = git(git_repo, "log", "-1", "--format=%an <%ae>", branch).strip()
        assert author == "Chump Dispatched <chump-dispatch@chump.bot>"
    assert "shipped=4  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in done.stdout
    agents = done.stdout.split("=== agents ===")[1]
    assert agents.count("3 turns") == 4 and "$" in agents
    assert re.search(r"cost=\$\d+\.\d{4}  turns=12", agents)
    db = sqlite3.connect(git_repo / "sessions" / "chump_memory.db")
    assert db.execute("SELECT COUNT(*) FROM chump_reflections WHERE outcome_class='success'"
                      ).fetchone() == (4,)
    # Every turn reached the model with the prompt naming its own gap.
    assert sorted({gap for gap, _turn in model.main_requests}) == [
        "RC-001", "RC-002", "RC-003", "RC-004"]
    # The raw stream stays on disk beside the readable view.
    log = next((git_repo / "sessions" / "chump-tui" / "logs").glob("rc-001-attempt1.log"))
    assert '"type":"result"' in log.read_text()


def test_error_result_is_the_reason(git_repo: Path, stub_env: dict[str, str], tmp_path: Path,
                                    claude_bin: Path, model_servers: list[ScriptedServer]) -> None:
    def plan(gap: str, turn: int) -> Step:
        return bash("exit 3", "a failing step") if turn == 0 else Fail(
            400, "scripted: the model refused")

    _model, server = start(model_servers, plan)
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--backlog", "gaps.yaml", "--tick", "0.5")
    assert re.search(r"KILLED\s+claude/rc-001\s+exit code 1", done.stdout), done.stdout
    outcome = [ln for ln in done.stderr.splitlines() if "claude/rc-001: EXITED 1" in ln]
    assert outcome and "API Error: 400 scripted: the model refused" in outcome[0]
    db = sqlite3.connect(git_repo / "sessions" / "chump_memory.db")
    (notes,) = db.execute("SELECT hypothesis FROM chump_reflections").fetchone()
    assert "tool error" in notes and "FAILED" in notes  # the 64-line ring kept both


@pytest.mark.skipif(os.geteuid() != 0, reason="the CLI refuses only when run as root")
def test_root_without_is_sandbox_says_so(git_repo: Path, stub_env: dict[str, str],
                                         tmp_path: Path, claude_bin: Path,
                                         model_servers: list[ScriptedServer]) -> None:
    _model, server = start(model_servers, ship_plan)
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    env.pop("IS_SANDBOX")
    outer = {k: v for k, v in os.environ.items() if k != "IS_SANDBOX"}
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--watch", "--backlog", "gaps.yaml", "--tick", "0.5"], cwd=git_repo,
                          env={**outer, **env}, capture_output=True, text=True, timeout=120,
                          check=False)
    outcome = [ln for ln in done.stderr.splitlines() if "claude/rc-001: EXITED 1" in ln]
    assert outcome, done.stderr
    assert "exit code 1" in outcome[0] and "IS_SANDBOX=1" in outcome[0]


def test_a_model_that_never_answers_is_killed_by_the_first_output_watchdog(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer]) -> None:
    _model, server = start(model_servers, lambda gap, turn: Hang())
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--backlog", "gaps.yaml", "--tick", "0.5",
                 "--first-output-timeout", "6", "--kill-grace", "2")
    # claude's own init event came at once; the model never did: that is "no first output".
    assert re.search(r"KILLED\s+claude/rc-001\s+no output for 6s", done.stdout), done.stdout


def test_hung_model_is_quiet_then_killed_by_idle_timeout(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer]) -> None:
    _model, server = start(model_servers, lambda gap, turn: bash("echo working") if turn == 0 else Hang())
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--backlog", "gaps.yaml", "--tick", "0.5",
                 "--idle-timeout", "6", "--kill-grace", "2")
    assert re.search(r"KILLED\s+claude/rc-001\s+no output for 6s", done.stdout), done.stdout
    assert "[monitor] claude/rc-001: killing (no output for 6s)" in done.stderr


def test_busy_descendant_is_not_idle(git_repo: Path, stub_env: dict[str, str], tmp_path: Path,
                                     claude_bin: Path, model_servers: list[ScriptedServer]) -> None:
    burn = ("python3 -c 'import time\nend = time.time() + 9\nwhile time.time() < end: pass' "
            "&& echo built")

    def plan(gap: str, turn: int) -> Step:
        return [bash(burn, "a long build that prints nothing"), commit_step(gap),
                bash("gh pr create --fill")][turn] if turn < 3 else Say("101")

    _model, server = start(model_servers, plan)
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--backlog", "gaps.yaml", "--tick", "0.5",
                 "--idle-timeout", "4")
    assert re.search(r"SHIPPED\s+claude/rc-001", done.stdout), done.stdout + done.stderr[-2000:]


async def test_console_shows_the_running_tool_then_cost_and_turns(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer], monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import DataTable

    from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
    from chump_tui.tui.screens.summary import SummaryScreen
    from tests.tui_factory import close_app, live_app, screen_text, until

    def plan(gap: str, turn: int) -> Step:
        steps = [bash("sleep 4; echo slow done", "a slow step"), commit_step(gap),
                 bash("gh pr create --fill")]
        return steps[turn] if turn < len(steps) else Say("101")

    _model, server = start(model_servers, plan)
    for key, value in claude_env(server, tmp_path, claude_bin).items():
        monkeypatch.setenv(key, value)
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    app = live_app(git_repo, git_repo / "gaps.yaml", tick_s=0.3)
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
            await pilot.press("y")
            await until(pilot, lambda: "▶ Bash  sleep 4; echo slow done" in screen_text(app),
                        60, "the card showing the slow step")
            text = screen_text(app)
            assert "▶ Bash  sleep 4; echo slow done · " in text
            assert re.search(r"\n[ ┃│]+\d turns? · in ", text)  # its numbers, a line of their own
            assert "→ Bash  sleep 4; echo slow done" in text  # the output pane, readable
            assert '{"type"' not in text  # never raw JSON
            await until(pilot, lambda: app.dispatches["RC-001#1"].label() == "SHIPPED", 60,
                        "shipped")
            await until(pilot, lambda: app.dispatches["RC-001#1"].cost_usd is not None, 30,
                        "the final report")
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, SummaryScreen), 5, "summary")
            table = app.screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 1, 5, "the row")
            assert str(table.get_cell("RC-001#1", "turns")) == "4"
            assert re.fullmatch(r"\$0\.\d{4}", str(table.get_cell("RC-001#1", "cost")))
            assert re.search(r"cost=\$0\.\d{4}  turns=4", screen_text(app))
    finally:
        close_app(app)


BUILD_ERROR = "error: build failed: cannot find -lssl"


def three_outcomes(gap: str, turn: int) -> Step:
    """RC-001 ships; RC-002's build fails once, then it ships; RC-003 commits and exits
    without a PR."""
    failing = bash(f"echo compiling; echo '{BUILD_ERROR}' >&2; echo 'note: see the log' >&2; "
                   "exit 3", "build")
    steps = {"RC-001": [commit_step(gap), bash("gh pr create --fill")],
             "RC-002": [failing, commit_step(gap), bash("gh pr create --fill")],
             "RC-003": [commit_step(gap)]}[gap]
    return steps[turn] if turn < len(steps) else Say("101" if gap != "RC-003" else "done")


def test_every_attempt_is_counted_and_a_tool_error_shown(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer]) -> None:
    """Three real agents: the totals add all three (shipped or not), the failed build's text
    is in the output and counted, an agent that exited without a PR keeps its numbers."""
    _model, server = start(model_servers, three_outcomes)
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-004")[0].replace(
        ", depends_on: [E2E-001]", ""))
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--backlog", "gaps.yaml", "--tick",
                 "0.5", "--max-parallel", "3", "--soft-deadline", "8")
    out = done.stdout
    assert "shipped=2  ci_failed=0  stalled=1" in out, out + done.stderr[-2000:]
    agents = out.split("=== agents ===")[1]
    costs = [float(c) for c in re.findall(r"claude/rc-00\d #1  claude  .*\$(\d\.\d{4})", agents)]
    turns = [int(t) for t in re.findall(r"  (\d+) turns  ", agents)]
    assert len(costs) == 3 and len(turns) == 3, agents  # the one without a PR too
    total = re.search(r"cost=\$(\d\.\d{4})  turns=(\d+)", agents)
    assert total and abs(float(total.group(1)) - sum(costs)) < 0.0002, agents
    assert int(total.group(2)) == sum(turns) and "tool_errors=1" in agents
    assert re.search(r"claude/rc-002 #1 .* 1 tool error", agents)
    log = (git_repo / "sessions" / "chump-tui" / "logs" / "rc-002-attempt1.log").read_text()
    assert BUILD_ERROR in log
    # The export has every attempt's numbers, the one without a PR too.
    rows = json.loads(export_of(git_repo))["rows"]
    assert len(rows) == 3 and all(r["cost_usd"] is not None and r["turns"] for r in rows), rows
    no_pr = next(r for r in rows if r["gap"] == "RC-003")
    assert no_pr["outcome"] == "STALLED" and no_pr["duration_s"] < 8  # its exit, not the deadline


def export_of(repo: Path) -> str:
    """The summary export of the session the last run archived (its table and settled rows)."""
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.summary_export import export_summary

    session = repo / "sessions" / "chump-tui"
    table = json.loads(sorted(session.glob("state-*.json"))[-1].read_text())["dispatches"]
    rows = {d["key"]: d for d in table}
    for path in sorted(session.glob("settled-*.jsonl"))[-1:]:
        rows.update((d["key"], d) for d in map(json.loads, path.read_text().splitlines()) if d)
    records = [Dispatch.from_json(d) for d in rows.values()]
    return export_summary(records, repo / "exports", 1_800_000_000.0, "db")[0].read_text()


async def test_a_failed_tools_text_on_screen_and_every_result_on_demand(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer], monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import DataTable

    from chump_tui.tui.screens.monitor import MonitorScreen
    from chump_tui.tui.screens.summary import SummaryScreen
    from chump_tui.tui.screens.text_view import TextView
    from chump_tui.tui.screens.tool_results import ToolResultsScreen
    from tests.tui_factory import close_app, live_app, screen_text, until

    _model, server = start(model_servers, three_outcomes)
    for key, value in claude_env(server, tmp_path, claude_bin).items():
        monkeypatch.setenv(key, value)
    (git_repo / "gaps.yaml").write_text(
        "gaps:\n  - {id: RC-002, title: two, priority: P1, effort: s, status: open}\n")
    app = live_app(git_repo, git_repo / "gaps.yaml", tick_s=0.3)
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            app.dispatch_gaps(list(app.setup.backlog.gaps))
            await pilot.press("m")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), 5)
            await until(pilot, lambda: BUILD_ERROR in screen_text(app), 60,
                        "the build's error in the output pane")
            await until(pilot, lambda: app.dispatches["RC-002#1"].label() == "SHIPPED", 60,
                        "shipped")
            await until(pilot, lambda: "1 tool error" in screen_text(app), 10, "the card's count")
            await pilot.press("t")
            await until(pilot, lambda: isinstance(app.screen, ToolResultsScreen), 5, "tools")
            table = app.screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count >= 3, 10, "the tool calls")
            failed = next(i for i, r in enumerate(app.screen.results) if r.ok is False)  # type: ignore[attr-defined]
            table.move_cursor(row=failed)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, TextView), 5, "the whole result")
            assert BUILD_ERROR in app.screen.body and "note: see the log" in app.screen.body  # type: ignore[attr-defined]
            await pilot.press("escape", "escape", "s")
            await until(pilot, lambda: isinstance(app.screen, SummaryScreen), 5, "summary")
            summary = app.screen.query_one(DataTable)
            await until(pilot, lambda: summary.row_count == 1, 5, "its row")
            assert str(summary.get_cell("RC-002#1", "errors")) == "1"
            assert "tool_errors=1" in screen_text(app)
    finally:
        close_app(app)


def test_a_model_api_that_keeps_failing_is_said_as_such(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, claude_bin: Path,
        model_servers: list[ScriptedServer]) -> None:
    """claude retries a failing model API (its api_retry events): output, not progress; the
    watchdog that ends it says what it saw."""
    _model, server = start(model_servers, lambda gap, turn: Fail(529, "overloaded"))
    (git_repo / "gaps.yaml").write_text(FOUR.split("  - {id: RC-002")[0])
    env = {**stub_env, **claude_env(server, tmp_path, claude_bin)}
    done = plain(git_repo, env, "--execute", "--watch", "--backlog", "gaps.yaml", "--tick", "0.5",
                 "--first-output-timeout", "8", "--kill-grace", "1")
    killed = re.search(r"KILLED\s+claude/rc-001\s+(.*)", done.stdout)
    assert killed, done.stdout + done.stderr[-2000:]
    assert re.fullmatch(r"no output for 8s \(waiting on the model API: \d+ retries, last retry "
                        r"\d+\)", killed.group(1)), killed.group(1)
