"""Nothing lost: crash and restart, exactly-once reflections, re-attach, one console per repo."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chump_tui.agent_process import group_has_live_member
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine import Engine, EngineConfig
from chump_tui.monitor import DispatchOutcome
from chump_tui.pr_providers import PrStatus, ScriptedPrProvider
from chump_tui.reflections import DispatchReflection, SqliteReflectionWriter
from chump_tui.session_store import SessionBusy, SessionStore, needs_resume
from tests.conftest import saved_rows, wait_for
from tests.test_cli_e2e import FOUR_GAPS
from tests.test_engine import ScriptSpawner, gap

CHAIN = """gaps:
  - {id: C-3, title: c, priority: P1, effort: s, status: open, depends_on: [B-2]}
  - {id: B-2, title: b, priority: P1, effort: s, status: open, depends_on: [A-1]}
  - {id: A-1, title: a, priority: P1, effort: s, status: open}
  - {id: Z-9, title: z, priority: P2, effort: s, status: open}
"""


def cli(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "chump_tui", "--no-tui", *args], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def state(repo: Path) -> list[dict[str, object]]:
    return saved_rows(repo / "sessions" / "chump-tui")


def reflection_rows(repo: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(repo / "sessions" / "chump_memory.db")
    return conn.execute("SELECT intended_goal, observed_outcome FROM chump_reflections "
                        "ORDER BY id").fetchall()


def test_state_file_is_atomic_json_and_round_trips(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions" / "chump-tui")
    rec = Dispatch(key="A-1#1", gap_id="A-1", title="t", priority="P1", effort="s",
                   branch="claude/a-1", worktree=str(tmp_path / ".claude/worktrees/a-1"),
                   attempt=1, started_at=1.0,
                   soft_deadline_s=60, phase="ended", pr=PrStatus(3, "MERGED", "CLEAN"),
                   outcome=DispatchOutcome.shipped(3))
    store.save([rec])
    loaded, warnings = store.load()
    assert warnings == [] and loaded == [rec]
    assert (store.state_path.stat().st_mode & 0o077) == 0
    assert not list(store.directory.glob(".state.*.tmp"))
    store.state_path.write_text("{not json")
    loaded, warnings = store.load()
    assert loaded == [] and "unreadable" in warnings[0]
    assert list(store.directory.glob("state.corrupt-*.json"))


def settled_row(tmp_path: Path, n: int, **fields: object) -> Dispatch:
    row = Dispatch(key=f"S-{n}#1", gap_id=f"S-{n}", title="t", priority="P1", effort="s",
                   branch=f"claude/s-{n}", worktree=str(tmp_path / f".claude/worktrees/s-{n}"),
                   attempt=1, started_at=float(n), soft_deadline_s=60, phase="ended",
                   outcome=DispatchOutcome.shipped(n), reflection_written=True)
    for name, value in fields.items():
        setattr(row, name, value)
    return row


def test_settled_rows_leave_the_table_once_and_load_back_merged(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions" / "chump-tui", tmp_path)
    done = [settled_row(tmp_path, n) for n in range(3)]
    running = settled_row(tmp_path, 3, phase="running", outcome=None, reflection_written=False)
    store.save([*done, running])
    store.save([*done, running], changed=running.key)  # nothing settled anew: no append
    table = json.loads(store.state_path.read_text())["dispatches"]
    assert [r["key"] for r in table] == ["S-3#1"]  # only the row still in play
    assert len(store.settled_path.read_text().splitlines()) == 3
    assert (store.settled_path.stat().st_mode & 0o077) == 0
    # A settled row that changes again (its late cost) is appended; the later one wins.
    done[1] = settled_row(tmp_path, 1, cost_usd=0.5)
    store.save([*done, running], changed=done[1].key)
    again = SessionStore(store.directory, tmp_path)
    loaded, warnings = again.load()
    assert warnings == [] and loaded == [*done, running]
    again.save(loaded)  # a resumed session appends nothing it already holds
    assert len(store.settled_path.read_text().splitlines()) == 4
    assert again.archive() is not None
    assert not store.settled_path.exists() and list(store.directory.glob("settled-*.jsonl"))


def test_a_save_appends_the_rows_that_changed_and_a_load_merges_them(tmp_path: Path) -> None:
    """A thousand live rows made each save a megabyte: between rewrites of state.json the
    changed rows go to its generation's journal. A crash leaves a torn last line (left out)
    or an old journal beside a newer state (ignored); archiving takes the journal along."""
    store = SessionStore(tmp_path / "sessions" / "chump-tui", tmp_path)
    rows = [settled_row(tmp_path, n, phase="running", outcome=None, reflection_written=False)
            for n in range(50)]
    store.save(rows)  # the first save writes the state whole: generation 1
    whole = store.state_path.read_text()
    rows[7] = settled_row(tmp_path, 7, phase="running", outcome=None,
                          reflection_written=False, cost_usd=1.25)
    store.save(rows, changed=rows[7].key)
    assert store.state_path.read_text() == whole  # not rewritten
    journal = store.directory / "changes-1.jsonl"
    assert len(journal.read_text().splitlines()) == 1 and '"cost_usd":1.25' in journal.read_text()
    loaded, warnings = SessionStore(store.directory, tmp_path).load()
    assert warnings == [] and loaded == rows
    # A crash mid-append: the torn line is left out (and cut), the rows before it kept.
    with open(journal, "a") as fh:
        fh.write('{"key": "S-8#1", "cost_us')
    again = SessionStore(store.directory, tmp_path)
    loaded, warnings = again.load()
    assert loaded == rows and journal.read_text().endswith("\n")
    # Its next save rewrites the state (generation 2); an old journal beside it is not read.
    again.save(loaded)
    assert json.loads(store.state_path.read_text())["generation"] == 2
    assert not journal.exists()
    (store.directory / "changes-1.jsonl").write_text(
        json.dumps(settled_row(tmp_path, 7, phase="running", outcome=None,
                               reflection_written=False, cost_usd=99.0).to_json()) + "\n")
    assert SessionStore(store.directory, tmp_path).load()[0] == rows
    # A journal grows to the live rows' size (at least 256 KiB), then the state is rewritten.
    for n in range(400):
        rows[n % 50] = settled_row(tmp_path, n % 50, phase="running", outcome=None,
                                   reflection_written=False, cost_usd=float(n))
        again.save(rows, changed=rows[n % 50].key)
    assert json.loads(store.state_path.read_text())["generation"] > 2
    assert SessionStore(store.directory, tmp_path).load()[0] == rows
    assert again.archive() is not None
    assert not [p for p in store.directory.glob("changes-*.jsonl")
                if p.stem.removeprefix("changes-").isdigit()]  # taken along
    assert again.bring_back_last()
    assert SessionStore(store.directory, tmp_path).load()[0] == rows


def test_a_settled_file_cut_by_a_crash_or_planted_is_never_trusted(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions" / "chump-tui", tmp_path)
    store.save([settled_row(tmp_path, 1)])
    with store.settled_path.open("a") as fh:  # a crash in the middle of an append
        fh.write('{"key": "S-2#1", "gap_')
    resumed = SessionStore(store.directory, tmp_path)
    loaded, warnings = resumed.load()
    assert [r.key for r in loaded] == ["S-1#1"] and warnings == []
    resumed.save([*loaded, settled_row(tmp_path, 2)])  # after the cut line, not inside it
    assert [r.key for r in SessionStore(store.directory, tmp_path).load()[0]] == [
        "S-1#1", "S-2#1"]
    outside = settled_row(tmp_path, 3, log_path=str(tmp_path / "precious.bin"))
    with store.settled_path.open("a") as fh:
        fh.write(json.dumps(outside.to_json()) + "\n")
    loaded, warnings = SessionStore(store.directory, tmp_path).load()
    assert [r.key for r in loaded] == ["S-1#1", "S-2#1"]
    assert "refused dispatch S-3#1" in warnings[0]
    assert list(store.directory.glob("settled.refused-*.jsonl"))
    store.settled_path.unlink()
    store.settled_path.symlink_to(tmp_path / "elsewhere.jsonl")
    (tmp_path / "elsewhere.jsonl").write_text(json.dumps(settled_row(tmp_path, 4).to_json()))
    loaded, warnings = SessionStore(store.directory, tmp_path).load()
    assert loaded == [] and "symbolic link" in warnings[0]


def test_a_short_append_leaves_no_half_row(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import chump_tui.session_store as session_store

    store = SessionStore(tmp_path / "sessions" / "chump-tui", tmp_path)
    rows = [settled_row(tmp_path, 1), settled_row(tmp_path, 2)]
    store.save(rows[:1])
    real_write = os.write
    monkeypatch.setattr(session_store.os, "write",
                        lambda fd, data: real_write(fd, data[:len(data) // 3]))
    with pytest.raises(OSError):  # the disk filled mid-append: the engine reports it
        store.save(rows)
    monkeypatch.setattr(session_store.os, "write", real_write)
    store.save(rows)
    loaded, warnings = SessionStore(store.directory, tmp_path).load()
    assert warnings == [] and [r.key for r in loaded] == ["S-1#1", "S-2#1"]


def test_second_holder_is_refused_with_the_pid(tmp_path: Path) -> None:
    first = SessionStore(tmp_path / "s")
    first.acquire()
    with pytest.raises(SessionBusy) as err:
        SessionStore(tmp_path / "s").acquire()
    assert err.value.pid == os.getpid() and f"pid {os.getpid()}" in str(err.value)
    first.release()
    SessionStore(tmp_path / "s").acquire()


def test_second_plain_execute_in_same_repo_exits_2(git_repo: Path,
                                                   stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    holder = SessionStore(git_repo / "sessions" / "chump-tui")
    holder.acquire()
    try:
        proc = cli(git_repo, "--backlog", "gaps.yaml", "--execute")
        _out, err = proc.communicate(timeout=30)
    finally:
        holder.release()
    assert proc.returncode == 2
    assert f"session held by pid {os.getpid()}" in err and "Traceback" not in err
    assert not (git_repo / ".claude").exists()


def test_kill_9_mid_run_then_restart_records_every_outcome_once(
        git_repo: Path, stub_env: dict[str, str]) -> None:
    """Outcomes recorded while the DB is locked, console killed -9, lock released, restart."""
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    env = dict(os.environ, FAKE_AGENT_MODE="slow", FAKE_AGENT_SECONDS="0.5")
    db = git_repo / "sessions" / "chump_memory.db"
    SqliteReflectionWriter(db).write(DispatchReflection.build(
        "SEED-0", "s", DispatchOutcome.shipped(1), 1, 0, "claude", []))
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    first = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                env=env)
    try:
        wait_for(lambda: sum(1 for d in state(git_repo) if d.get("outcome")) == 2, 30,
                 "two outcomes in the state file")
        assert not any(d["reflection_written"] for d in state(git_repo))
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    finally:
        holder.rollback()
        holder.close()
    second = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                 env=env)
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert err.count("reflection not written yet") == 2
    goals = [g for g, _ in reflection_rows(git_repo)]
    for gid in ("E2E-001", "E2E-002", "E2E-003", "E2E-004"):
        assert goals.count(f"ship gap {gid}") == 1, goals


def test_agents_outlive_a_killed_console_and_are_judged_after(
        git_repo: Path, stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    env = dict(os.environ, FAKE_AGENT_MODE="slow", FAKE_AGENT_SECONDS="1.5")
    first = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                env=env)
    wait_for(lambda: len([d for d in state(git_repo) if d.get("pid")]) == 2, 30,
             "two agents in the state file")
    pids = [int(str(d["pid"])) for d in state(git_repo)]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert all(group_has_live_member(p) for p in pids), "agents outlive the console"
    wait_for(lambda: not any(group_has_live_member(p) for p in pids), 30, "agents done")
    second = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                 "--max-parallel", "2", env=env)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert err.count("is gone; judged by its PR") == 2
    assert "  SHIPPED   claude/e2e-001  PR #" in out and "  SHIPPED   claude/e2e-002  PR #" in out
    goals = [g for g, _ in reflection_rows(git_repo)]
    assert goals.count("ship gap E2E-001") == 1 and goals.count("ship gap E2E-002") == 1


def test_restart_reattaches_live_agents_and_watches_them(git_repo: Path,
                                                         stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    env = dict(os.environ, FAKE_AGENT_MODE="slow", FAKE_AGENT_SECONDS="4")
    first = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                env=env)
    wait_for(lambda: len([d for d in state(git_repo) if d.get("pid")]) == 2, 30, "two agents")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    second = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                 env=env)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "re-attached 2 agent(s) still running from the console that closed" in err
    assert err.count(" re-attached\n") == 2
    assert out.count("  SHIPPED   ") == 2
    assert len(reflection_rows(git_repo)) == 2
    assert not (git_repo / "sessions" / "chump-tui" / "state.json").exists()  # archived
    assert list((git_repo / "sessions" / "chump-tui").glob("state-*.json"))


def test_reused_pid_is_never_taken_for_our_agent(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        rec = Dispatch(key="R-1#1", gap_id="R-1", title="t", priority="P1", effort="s",
                       branch="claude/r-1", worktree=str(tmp_path), attempt=1,
                       started_at=time.time() - 10_000, soft_deadline_s=60, phase="running",
                       pid=stranger.pid, process_start=time.time() - 5_000)
        writer_db = tmp_path / "m.db"
        engine = Engine(tmp_path, ScriptSpawner(), ScriptedPrProvider({}),
                        SqliteReflectionWriter(writer_db), EngineConfig(tick_s=0.01),
                        store=SessionStore(tmp_path / "s"))
        notes = engine.resume([rec])
        assert notes == ["re-attached 0 agent(s) still running from the console that closed; "
                         "1 ended while nobody watched",
                         f"R-1#1: pid {stranger.pid} is gone; judged by its PR"]
        engine.start()
        assert engine.wait_until_idle(10)
        engine.close()
        (d,) = engine.snapshot()
        assert d.outcome is not None and d.outcome.kind == "killed"
        assert stranger.poll() is None, "an unrelated process with our old pid was signalled"
    finally:
        stranger.kill()
        stranger.wait()


def test_locked_db_while_outcomes_arrive_every_row_lands_once(tmp_path: Path) -> None:
    db = tmp_path / "sessions" / "chump_memory.db"
    writer = SqliteReflectionWriter(db, busy_timeout_s=0.05)
    writer.write(DispatchReflection.build(
        "SEED-0", "s", DispatchOutcome.shipped(1), 1, 0, "claude", []))
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    provider = ScriptedPrProvider({f"claude/l-{i}": [PrStatus(10 + i, "MERGED")] for i in range(3)})
    store = SessionStore(tmp_path / "sessions" / "chump-tui")
    engine = Engine(tmp_path, ScriptSpawner(), provider, writer, EngineConfig(tick_s=0.01),
                    store=store)
    engine.dispatch([gap(f"L-{i}") for i in range(3)])
    engine.start()
    try:
        assert engine.wait_until_idle(10)
        wait_for(lambda: engine.reflections.last_error() != "", 10, "a failed write")
        assert engine.reflections.pending() == 3
        saved = saved_rows(store.directory)
        assert all(d["outcome"] and not d["reflection_written"] for d in saved)
        holder.rollback()
        holder.close()
        assert engine.reflections.flush(30)
    finally:
        engine.close()
    goals = [g for g, _ in sqlite3.connect(db).execute(
        "SELECT intended_goal, 1 FROM chump_reflections")]
    assert sorted(goals) == ["ship gap L-0", "ship gap L-1", "ship gap L-2", "ship gap SEED-0"]
    assert all(d.reflection_written for d in engine.snapshot())
    # A second write of the same outcome (as after a crash) is a no-op.
    again = DispatchReflection.build(
        "L-0", "s", DispatchOutcome.shipped(10), 1, 0, "claude", [], engine.snapshot()[0].uid)
    writer.write(again)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM chump_reflections").fetchone() == (4,)


def test_unwritten_reflection_is_written_after_restart(tmp_path: Path) -> None:
    rec = Dispatch(key="U-1#1", gap_id="U-1", title="t", priority="P1", effort="s",
                   branch="claude/u-1", worktree=str(tmp_path), attempt=1, started_at=100.0,
                   soft_deadline_s=60, phase="ended", outcome=DispatchOutcome.ci_failed(5),
                   ended_at=160.0)
    assert needs_resume([rec])
    db = tmp_path / "m.db"
    engine = Engine(tmp_path, ScriptSpawner(), ScriptedPrProvider({}), SqliteReflectionWriter(db),
                    EngineConfig(tick_s=0.01))
    assert "reflection not written yet" in engine.resume([rec])[0]
    assert engine.reflections.flush(10)
    engine.close()
    rows = sqlite3.connect(db).execute("SELECT observed_outcome FROM chump_reflections").fetchall()
    assert rows == [("outcome=ci_failed duration_s=60 pr=Some(5)",)]


def test_continuous_drains_a_dependency_chain_in_order(git_repo: Path,
                                                       stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(CHAIN)
    proc = cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--continuous",
               "--tick", "0.2", "--max-parallel", "2")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    order = [ln.split()[1] for ln in out.splitlines() if ln.startswith("DISPATCHED: ")]
    assert sorted(order) == ["A-1", "B-2", "C-3", "Z-9"]
    assert order.index("A-1") < order.index("B-2") < order.index("C-3")
    assert "shipped=4  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out


def test_a_retry_keeps_ignoring_the_old_pr_after_a_restart(tmp_path: Path) -> None:
    rec = Dispatch(key="R-1#2", gap_id="R-1", title="t", priority="P1", effort="s",
                   branch="claude/r-1", worktree=str(tmp_path / ".claude/worktrees/r-1"),
                   attempt=2, started_at=time.time(), soft_deadline_s=0.3, phase="running",
                   stale_prs=[7])
    store = SessionStore(tmp_path / "sessions" / "chump-tui")
    store.save([rec])
    (loaded,), _ = store.load()
    assert loaded.stale_prs == [7]
    engine = Engine(tmp_path, ScriptSpawner(), ScriptedPrProvider({"claude/r-1": [
        PrStatus(7, "CLOSED")]}), SqliteReflectionWriter(tmp_path / "m.db"),
        EngineConfig(tick_s=0.01))
    engine.resume([loaded])
    engine.start()
    assert engine.wait_until_idle(10)
    engine.close()
    # Attempt 1's closed PR #7 is not attempt 2's outcome: it stalls at its deadline.
    assert engine.snapshot()[0].outcome == DispatchOutcome.stalled()
