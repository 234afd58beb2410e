"""Follow-ups and CI repairs: the attempt's conversation resumed as its next run, on the same
row, in the same worktree, with numbers that add up; saved so a crash re-attaches it. Real
git worktrees, a real subprocess agent (tests/helpers/fake_claude.py, speaking claude's
stream-json and its --resume), the stub gh on PATH, a real state file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from chump_tui.backlog import Gap
from chump_tui.engine import Engine, EngineConfig
from chump_tui.pr_providers import GhPrProvider
from chump_tui.reflections import MemoryReflectionWriter
from chump_tui.session_store import SessionStore
from chump_tui.spawners import RealSpawner
from tests.conftest import HELPERS, git, wait_for
from tests.test_cli_e2e import reflection_rows

GAP = Gap("FU-1", "follow me up", "P1", "s", "open")


@pytest.fixture
def agent_env(stub_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **stub_env, "CHUMP_CLAUDE_BIN": str(HELPERS / "fake_claude.py"),
            "FAKE_CLAUDE_PROMPTS": str(tmp_path / "prompts.txt")}


def make_engine(repo: Path, environ: dict[str, str], tmp_path: Path,
                store: SessionStore | None = None, **config: object) -> tuple[
                    Engine, MemoryReflectionWriter]:
    writer = MemoryReflectionWriter()
    cfg = EngineConfig(tick_s=0.2, kill_grace_s=2.0, environ=environ,
                       log_dir=tmp_path / "logs", first_output_timeout_s=0, idle_timeout_s=0)
    for key, value in config.items():
        setattr(cfg, key, value)
    engine = Engine(repo, RealSpawner(repo, environ, "claude"), GhPrProvider(repo, environ=environ),
                    writer, cfg, backlog=[GAP], store=store)
    engine.start()
    return engine, writer


def prompts(tmp_path: Path) -> str:
    path = tmp_path / "prompts.txt"
    return path.read_text() if path.exists() else ""


def test_a_follow_up_to_an_ended_attempt_resumes_its_session_on_the_same_row(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    environ = {**agent_env, "FAKE_CLAUDE_MODE": "no_pr", "FAKE_CLAUDE_RESUME_PR": "MERGED"}
    engine, writer = make_engine(git_repo, environ, tmp_path, soft_deadline_s=1.0)
    try:
        engine.dispatch([GAP])
        assert engine.wait_until_idle(30)
        (first,) = engine.snapshot()
        assert first.outcome is not None and first.outcome.kind == "stalled"
        assert first.session_id and first.cost_usd == pytest.approx(0.01)
        assert engine.follow_up(first.key, "   ") == "the message is empty"

        assert engine.follow_up(first.key, "Also add a changelog line, please.") is None
        wait_for(lambda: (engine.get(first.key) or first).run == 2, 10, "the second run")
        assert engine.wait_until_idle(30)
        assert engine.reflections.flush(10)
        (row,) = engine.snapshot()
    finally:
        engine.close()
    assert row.key == first.key and row.run == 2 and row.follow_ups == 1
    assert row.outcome is not None and row.outcome.kind == "shipped", row.reason()
    # The numbers of both runs, added.
    assert row.cost_usd == pytest.approx(0.02)
    assert (row.turns, row.tokens_in, row.tokens_out) == (4, 2000, 200)
    # The same session resumed, with the operator's words, in the same worktree and branch.
    said = prompts(tmp_path)
    assert f"=== run {first.session_id} resumed" in said
    assert "Also add a changelog line, please." in said
    log = git(git_repo, "log", "--format=%s", row.branch)
    assert "work: run-first" in log and "work: run-resumed" in log
    assert "── run 2: follow-up 2 ──" in Path(row.log_path).read_text()
    # Each end of the attempt is a reflection of its own: stalled, then shipped.
    assert sorted(r.outcome for r in writer.snapshot()) == ["shipped", "stalled"]


def test_a_follow_up_to_a_running_agent_stops_it_without_an_outcome_and_resumes_it(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    environ = {**agent_env, "FAKE_CLAUDE_MODE": "hang", "FAKE_CLAUDE_RESUME_PR": "MERGED"}
    engine, writer = make_engine(git_repo, environ, tmp_path)
    try:
        engine.dispatch([GAP])
        (row,) = engine.snapshot()
        wait_for(lambda: (engine.get(row.key) or row).session_id, 10, "its session id")
        first_pid = (engine.get(row.key) or row).pid
        assert first_pid is not None
        assert engine.follow_up(row.key, "Stop waiting and commit what you have.") is None
        assert not psutil.pid_exists(first_pid) or \
            psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        assert engine.wait_until_idle(30)
        assert engine.reflections.flush(10)
        (row,) = engine.snapshot()
    finally:
        engine.close()
    assert row.run == 2 and row.pid != first_pid
    assert row.outcome is not None and row.outcome.kind == "shipped"
    assert [r.outcome for r in writer.snapshot()] == ["shipped"]  # the stop was no outcome


@pytest.mark.parametrize("why, setup", [
    ("its PR #100 is merged", "shipped"),
    ("has not reported a session to resume", "plain"),
])
def test_a_follow_up_that_cannot_be_is_refused_with_the_reason(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path, why: str,
        setup: str) -> None:
    environ = dict(agent_env)
    if setup == "plain":  # an agent that is no harness of ours: no session to resume
        environ["CHUMP_CLAUDE_BIN"] = str(HELPERS / "fake_agent.sh")
        environ["FAKE_AGENT_MODE"] = "fail"
    engine, _ = make_engine(git_repo, environ, tmp_path)
    try:
        engine.dispatch([GAP])
        assert engine.wait_until_idle(30)
        (row,) = engine.snapshot()
        refused = engine.follow_up(row.key, "more please")
    finally:
        engine.close()
    assert refused is not None and why in refused, refused


def test_a_failed_check_is_repaired_with_its_name_and_log_then_ships(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    failed_log = tmp_path / "failed.log"
    failed_log.write_text("noise\n" * 2000 + "FAILED tests/test_sum.py::test_sum\n"
                          "\x1b]0;pwned\x07AssertionError: assert 3 == 4\n")
    environ = {**agent_env, "STUB_GH_CREATE_STATE": "OPEN CLEAN unit-tests",
               "FAKE_CLAUDE_RESUME_PR": "MERGED", "STUB_GH_FAILED_LOG": str(failed_log)}
    engine, writer = make_engine(git_repo, environ, tmp_path, fix_ci=2)
    try:
        engine.dispatch([GAP])
        assert engine.wait_until_idle(40)
        assert engine.reflections.flush(10)
        (row,) = engine.snapshot()
    finally:
        engine.close()
    assert row.outcome is not None and row.outcome.kind == "shipped", row.reason()
    assert row.ci_repairs == 1 and row.run == 2 and row.run_note == "fixing CI (1/2)"
    said = prompts(tmp_path).split("=== run ")[-1]
    assert "resumed" in said.splitlines()[0]
    assert "Failing checks: unit-tests" in said and "#100" in said
    assert "AssertionError: assert 3 == 4" in said and "--- run 900 ---" in said
    assert "\x1b" not in said and "␛]0;pwned" in said  # the log is outside text
    assert len(said) < 6000  # a bounded tail, not the whole log
    (reflection,) = writer.snapshot()
    assert reflection.outcome == "shipped" and "ci_repairs=1" in reflection.notes


def test_without_fix_ci_a_failed_check_waits_as_the_reference_does(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    environ = {**agent_env, "STUB_GH_CREATE_STATE": "OPEN CLEAN unit-tests"}
    engine, _ = make_engine(git_repo, environ, tmp_path)
    try:
        engine.dispatch([GAP])
        (row,) = engine.snapshot()
        wait_for(lambda: (engine.get(row.key) or row).pr is not None, 20, "its PR seen")
        wait_for(lambda: engine.gh_polls >= 4, 10, "a few more polls")
        row = engine.get(row.key) or row
        engine.stop_all("test", grace_s=0.5)
    finally:
        engine.close()
    assert row.run == 1 and row.ci_repairs == 0 and row.label() == "PR OPEN #100"
    assert "resumed" not in prompts(tmp_path)


def test_a_crash_while_a_follow_up_runs_reattaches_it_as_that_run(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    environ = {**agent_env, "FAKE_CLAUDE_MODE": "no_pr", "FAKE_CLAUDE_RESUME": "hang"}
    store = SessionStore.for_repo(git_repo)
    store.acquire()
    engine, _ = make_engine(git_repo, environ, tmp_path, store=store, soft_deadline_s=60.0,
                            log_dir=store.log_dir)
    engine.dispatch([GAP])
    (row,) = engine.snapshot()
    wait_for(lambda: (engine.get(row.key) or row).exit_code == 0, 20, "the first run's exit")
    assert engine.follow_up(row.key, "keep going") is None
    wait_for(lambda: (engine.get(row.key) or row).run == 2, 10, "the second run")
    running = engine.get(row.key)
    assert running is not None and running.pid is not None
    # The console dies (its threads stop; the agent, in a session of its own, does not).
    engine.table.closed.set()
    engine.loop.close()
    store.release()

    store2 = SessionStore.for_repo(git_repo)
    store2.acquire()
    saved, _ = store2.load()
    engine2, _ = make_engine(git_repo, environ, tmp_path, store=store2, soft_deadline_s=60.0,
                             log_dir=store2.log_dir)
    try:
        notes = engine2.resume(saved)
        (back,) = engine2.snapshot()
        assert any("re-attached" in n for n in notes), notes
        assert back.run == 2 and back.run_note == "follow-up 2" and back.pid == running.pid
        assert back.follow_ups == 1 and back.earlier_cost_usd == pytest.approx(0.01)
        assert engine2.kill(back.key)
        assert engine2.wait_until_idle(20)
        (ended,) = engine2.snapshot()
    finally:
        engine2.close()
        store2.release()
        if psutil.pid_exists(running.pid):
            os.kill(running.pid, signal.SIGKILL)
    assert ended.outcome is not None and ended.outcome.kind == "killed"
    assert ended.cost_usd == pytest.approx(0.01)  # the first run's; the hung one said none


def test_chump_tui_follow_up_resumes_an_attempt_of_the_last_session_and_watches_it(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    (git_repo / "gaps.yaml").write_text(
        "gaps:\n  - {id: FU-1, title: follow me up, priority: P1, effort: s, status: open}\n")
    environ = {**agent_env, "FAKE_CLAUDE_MODE": "no_pr", "FAKE_CLAUDE_RESUME_PR": "MERGED"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chump_tui", *args], cwd=git_repo,
                              env=environ, capture_output=True, text=True, timeout=120)

    first = cli("--no-tui", "--backlog", "gaps.yaml", "--execute", "--watch",
                "--soft-deadline", "1", "--tick", "0.2")
    assert first.returncode == 0, first.stderr
    assert "STALLED" in first.stdout
    assert not (git_repo / "sessions" / "chump-tui" / "state.json").exists()  # put aside

    nothing = cli("follow-up", "NOPE-9", "hello", "--backlog", "gaps.yaml")
    assert nothing.returncode == 2 and "no attempt NOPE-9" in nothing.stderr

    done = cli("follow-up", "FU-1", "Open the PR this time.", "--backlog", "gaps.yaml",
               "--tick", "0.2")
    assert done.returncode == 0, done.stderr
    assert "RESUMED: FU-1#1 (follow-up 2)" in done.stdout
    assert "SHIPPED" in done.stdout and "PR #100" in done.stdout
    assert "Open the PR this time." in prompts(tmp_path)
    rows = reflection_rows(git_repo)
    assert [outcome for _, outcome in rows] == ["failure", "success"]


@pytest.mark.parametrize("session, usable", [
    ("92cbc996-da3f-4110-a861-c370c5f7ef9e", True), ("ses_dd2f1009effek87If4SQduAX76", True),
    ("", False), ("--dangerously-skip-permissions", False), ("-r", False), ("a b", False),
    ("x" * 200, False), ("a\nb", False),
])
def test_only_a_plain_session_id_goes_into_a_resume_command(session: str, usable: bool) -> None:
    from chump_tui.harness import HARNESSES, usable_session_id

    assert usable_session_id(session) is usable
    for harness in HARNESSES.values():  # every harness resumes by id, the message after it
        assert harness.resume_argv is not None
        argv = harness.resume_argv("bin", "SID", "A follow-up")
        assert argv.count("SID") == 1 and "A follow-up" in argv, argv


def test_a_resume_with_an_unusable_session_is_refused_before_anything_runs(
        git_repo: Path, agent_env: dict[str, str], tmp_path: Path) -> None:
    from chump_tui.agent_process import OutputLog
    from chump_tui.errors import DispatchError

    spawner = RealSpawner(git_repo, agent_env, "claude")
    with pytest.raises(DispatchError, match="no session id"):
        spawner.resume_agent(git_repo, "claude", "--output-format=text", "A follow-up",
                             tmp_path / "x.log", OutputLog(), None)
    assert not (tmp_path / "x.log").exists()


def test_opencode_names_its_session_on_each_step() -> None:
    from chump_tui.activity import Activity
    from chump_tui.agent_streams import opencode

    act = Activity()
    for event in opencode.parse({"type": "step_start", "sessionID": "ses_abc123",
                                 "part": {"type": "step-start"}}):
        act.apply(event, 1.0)
    assert act.session_id == "ses_abc123" and act.doing == "thinking…"


def test_failed_runs_and_the_head_come_from_gh_and_a_log_is_clipped_safe() -> None:
    from chump_tui.pr_providers import clip_log, parse_pr_list

    rows = parse_pr_list(json_bytes([{
        "number": 7, "state": "OPEN", "headRefName": "claude/x", "headRefOid": "ab12cd34ef",
        "statusCheckRollup": [
            {"name": "unit", "conclusion": "FAILURE",
             "detailsUrl": "https://github.com/o/r/actions/runs/123456789012/job/5"},
            {"name": "lint", "conclusion": "SUCCESS",
             "detailsUrl": "https://github.com/o/r/actions/runs/999/job/1"},
            {"name": "odd", "conclusion": "FAILURE", "detailsUrl": "javascript:alert(1)"},
            {"name": "huge", "conclusion": "FAILURE",
             "detailsUrl": "https://github.com/o/r/actions/runs/" + "9" * 401 + "/job/1"},
        ]}, {"number": 8, "state": "OPEN", "headRefName": "claude/y",
             "headRefOid": "--upload-pack=evil"}]))
    (_, pr), (_, other) = rows
    assert pr.failed_runs == (123456789012,) and pr.head_sha == "ab12cd34ef"
    assert other.head_sha == "" and other.failed_runs == ()
    text = clip_log(b"x" * 10_000 + b"\nlast \x1b[31mred\x1b[0m line\n")
    assert len(text.encode()) <= 4096 + 64 and text.endswith("last ␛[31mred␛[0m line")
    assert "\x1b" not in text


def json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value).encode()


def test_the_summary_and_the_export_count_later_runs_and_what_they_cost(
        tmp_path: Path) -> None:
    import json

    from chump_tui.dispatch_record import Dispatch
    from chump_tui.monitor import DispatchOutcome
    from chump_tui.plain import summary_lines
    from chump_tui.summary_export import export_summary

    def row(gap: str, **fields: object) -> Dispatch:
        d = Dispatch(key=f"{gap}#1", gap_id=gap, title="t", priority="P1", effort="s",
                     branch=f"claude/{gap.lower()}", worktree="", attempt=1,
                     started_at=1000.0, soft_deadline_s=60, phase="ended", harness="claude",
                     turns=4, tokens_in=2000, tokens_out=200,
                     outcome=DispatchOutcome.shipped(7), ended_at=1100.0)
        for key, value in fields.items():
            setattr(d, key, value)
        return d

    rows = [row("A-1", run=3, follow_ups=1, ci_repairs=1, cost_usd=0.05,
                first_run_cost_usd=0.02),
            row("B-2", cost_usd=0.01)]
    text = "\n".join(summary_lines(rows))
    assert "follow_ups=1  ci_repairs=1  their_cost=$0.0300" in text
    assert "follow-ups / CI repairs 1 / 1" in text
    json_path, md_path = export_summary(rows, tmp_path, 2000.0, "nowhere")
    data = json.loads(json_path.read_text())
    assert data["runs"] == "follow_ups=1  ci_repairs=1  their_cost=$0.0300"
    first = data["rows"][0]
    assert (first["follow_ups"], first["ci_repairs"]) == (1, 1)
    assert first["later_runs_cost_usd"] == pytest.approx(0.03)
    assert data["rows"][1]["later_runs_cost_usd"] is None
    assert "| 1 / 1 |" in md_path.read_text()
