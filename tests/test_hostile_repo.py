"""A hostile repository and damaged state: nothing outside the session is touched, nothing
recorded is lost, bad state is a warning and never a crash (issue: hostile repo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chump_tui.agent_process import OutputLog, read_log
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine import Engine, EngineConfig
from chump_tui.log_lines import LineSplitter, Redactor
from chump_tui.monitor import DispatchOutcome
from chump_tui.pr_providers import ScriptedPrProvider
from chump_tui.reflections import MemoryReflectionWriter
from chump_tui.session_store import SessionStore
from tests.conftest import git, wait_for
from tests.test_engine import ScriptSpawner, gap

TWENTY_MB = 20 * 1024 * 1024


def big_log(path: Path, last: str = "ERROR: the last thing it said") -> None:
    with open(path, "wb") as fh:
        line = b"x" * 1023 + b"\n"
        for _ in range(TWENTY_MB // len(line)):
            fh.write(line)
        fh.write(last.encode() + b"\n")


def state_record(repo: Path, **fields: object) -> dict[str, object]:
    rec = Dispatch(key="H-1#1", gap_id="H-1", title="t", priority="P1", effort="s",
                   branch="claude/h-1", worktree=str(repo / ".claude/worktrees/h-1"), attempt=1,
                   started_at=time.time() - 10, soft_deadline_s=60, phase="ended",
                   log_path=str(repo / "sessions/chump-tui/logs/h-1-attempt1.log")).to_json()
    rec.update(fields)
    return rec


def write_state(repo: Path, dispatches: object) -> Path:
    path = repo / "sessions" / "chump-tui" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "dispatches": dispatches}))
    return path


# ------------------------------------------------------------------ data destroyed
def test_reading_an_ended_agents_big_log_never_truncates_it(tmp_path: Path) -> None:
    log = tmp_path / "h-1-attempt1.log"
    big_log(log)
    size = log.stat().st_size
    output = OutputLog()
    read_log(log, output)
    assert log.stat().st_size == size
    assert output.tail(1) == ["ERROR: the last thing it said"]
    assert output.signal_lines()[-1] == "ERROR: the last thing it said"


def test_a_committed_state_file_cannot_name_a_log_outside_the_session(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    outside = tmp_path / "precious.bin"
    big_log(outside)
    before = outside.read_bytes()
    state = write_state(repo, [state_record(repo, log_path=str(outside),
                                            reflection_written=False)])
    store = SessionStore.for_repo(repo)
    records, warnings = store.load()
    assert records == []
    assert any("refused dispatch H-1#1" in w and str(outside) in w for w in warnings)
    assert outside.read_bytes() == before
    kept = list(state.parent.glob("state.refused-*.json"))
    assert kept and "precious.bin" in kept[0].read_text()  # nothing of theirs lost either


@pytest.mark.parametrize("field,value", [
    ("worktree", "/home/someone/project"), ("worktree", "{repo}/.claude/worktrees/../../x"),
    ("log_path", "{repo}/sessions/chump-tui/logs/../../../etc.log"), ("gap_id", "../x"),
    ("key", "OTHER#1")])
def test_records_with_paths_outside_the_session_are_refused(tmp_path: Path, field: str,
                                                            value: str) -> None:
    repo = tmp_path / "repo"
    good = state_record(repo)
    good["key"], good["gap_id"], good["branch"] = "G-1#1", "G-1", "claude/g-1"
    good["worktree"] = str(repo / ".claude/worktrees/g-1")
    write_state(repo, [state_record(repo, **{field: value.format(repo=repo)}), good])
    records, warnings = SessionStore.for_repo(repo).load()
    assert [r.key for r in records] == ["G-1#1"]
    assert any("refused" in w for w in warnings)


@pytest.mark.parametrize("payload", [
    '{"version":1,"dispatches":[null]}', '{"version":1,"dispatches":"ab"}', "[1, 2]",
    '{"version":1,"dispatches":[{"key":"H-1#1","pid":"123"}]}', '{"dispatches": {}}',
    "null", '{"version":1,"dispatches":[{"attempt": true}]}',
    pytest.param("[" * 100000, id="nested-100k")])
def test_state_file_of_the_wrong_shape_is_set_aside_not_a_crash(tmp_path: Path,
                                                                payload: str) -> None:
    repo = tmp_path / "repo"
    state = write_state(repo, [])
    state.write_text(payload)
    records, warnings = SessionStore.for_repo(repo).load()
    assert records == [] and len(warnings) == 1 and "moved to state.corrupt-" in warnings[0]
    assert not state.exists()
    assert list(state.parent.glob("state.corrupt-*.json"))


def test_wrong_state_shape_through_the_cli_is_a_warning(git_repo: Path,
                                                        stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text("gaps: []\n")
    write_state(git_repo, [None]).write_text('{"version":1,"dispatches":[{"key":1,"pid":"1"}]}')
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--backlog", "gaps.yaml"], cwd=git_repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr
    assert "unreadable" in done.stderr and "moved to state.corrupt-" in done.stderr
    assert done.returncode == 0


def test_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    target = tmp_path / "bashrc"
    target.write_text("export PATH=/usr/bin\n")
    target.chmod(0o644)
    own = repo / "sessions" / "chump-tui"
    own.mkdir(parents=True)
    (own / "lock").symlink_to(target)
    store = SessionStore.for_repo(repo)
    with pytest.raises(Exception, match="symbolic link"):
        store.acquire()
    assert target.read_text() == "export PATH=/usr/bin\n"
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("linked", ["sessions", "sessions/chump-tui", "sessions/chump-tui/logs"])
def test_symlinked_session_dirs_are_refused_with_one_line(git_repo: Path, tmp_path: Path,
                                                          stub_env: dict[str, str],
                                                          linked: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = git_repo / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    (git_repo / "gaps.yaml").write_text(
        "gaps:\n  - {id: S-1, priority: P1, effort: s, status: open}\n")
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--backlog", "gaps.yaml"], cwd=git_repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "symbolic link" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_symlinked_log_is_never_written_through(git_repo: Path, tmp_path: Path,
                                                stub_env: dict[str, str]) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("mine\n")
    logs = git_repo / "sessions" / "chump-tui" / "logs"
    logs.mkdir(parents=True)
    (logs / "l-1-attempt1.log").symlink_to(target)
    (git_repo / "gaps.yaml").write_text(
        "gaps:\n  - {id: L-1, priority: P1, effort: s, status: open}\n")
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--backlog", "gaps.yaml"], cwd=git_repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "DISPATCH-FAILED: L-1" in done.stderr and "symbolic link" in done.stderr
    assert done.returncode == 1
    assert target.read_text() == "mine\n"


def test_tracked_sessions_dir_is_warned_about(git_repo: Path, stub_env: dict[str, str]) -> None:
    (git_repo / "sessions").mkdir()
    (git_repo / "sessions" / "notes.txt").write_text("committed\n")
    git(git_repo, "add", "sessions")
    git(git_repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "sessions")
    (git_repo / "gaps.yaml").write_text("gaps: []\n")
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--backlog", "gaps.yaml"], cwd=git_repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "sessions/ is tracked by git" in done.stderr


def test_remove_worktree_is_refused_while_a_retry_works_in_it(tmp_path: Path) -> None:
    spawner = ScriptSpawner({"W-1": "exit 3"})
    engine = Engine(tmp_path, spawner, ScriptedPrProvider({}), MemoryReflectionWriter(),
                    EngineConfig(tick_s=0.01, kill_grace_s=0.2), backlog=[gap("W-1")])
    worktree = tmp_path / ".claude" / "worktrees" / "w-1"
    worktree.mkdir(parents=True)
    (worktree / "uncommitted.txt").write_text("work in progress\n")
    engine.start()
    try:
        engine.dispatch([gap("W-1")])
        wait_for(lambda: engine.get("W-1#1") and not engine.get("W-1#1").active, 10, "#1 ends")
        spawner.scripts["W-1"] = "sleep 30"
        engine.retry("W-1#1")
        wait_for(lambda: (d := engine.get("W-1#2")) is not None and d.phase == "running", 10,
                 "#2 running")
        error = engine.remove_worktree("W-1#1")
        assert error is not None and "#2" in error
        assert (worktree / "uncommitted.txt").exists()
    finally:
        engine.stop_all("test", grace_s=0.2)
        engine.close()


# --------------------------------------------------------------------- smaller
def test_secret_straddling_the_line_split_is_redacted() -> None:
    secret = "ghp_" + "S" * 36
    redactor = Redactor([secret])
    for offset in range(8150, 8200, 7):
        splitter = LineSplitter(redactor)
        data = ("x" * offset + secret + "y" * 9000).encode()
        lines = splitter.feed(data[:4000]) + splitter.feed(data[4000:]) + splitter.flush()
        shown = "".join(line.text for line in lines)
        assert "SSSS" not in shown and "ghp_" not in shown
        assert shown.count("***") == 1


def test_a_character_cut_at_the_split_stays_whole() -> None:
    splitter = LineSplitter(Redactor([]))
    lines = splitter.feed(("é" * 5000).encode()) + splitter.feed(("ü" * 5000).encode())
    lines += splitter.flush()
    assert "\ufffd" not in "".join(line.text for line in lines)
    assert "".join(line.text for line in lines) == "é" * 5000 + "ü" * 5000


def test_huge_json_line_keeps_memory_bounded() -> None:
    import tracemalloc

    splitter = LineSplitter(Redactor([]))
    tracemalloc.start()
    try:
        splitter.feed(b'{"type":"user","message":{"content":"')
        for _ in range(20):
            splitter.feed(b"a" * (1024 * 1024))
        lines = splitter.feed(b'"}}\n')
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(lines) == 1 and lines[0].cut and lines[0].size > 20 * 1024 * 1024
    assert peak < 8 * 1024 * 1024


def test_symlinked_reflection_db_is_not_written_through(tmp_path: Path) -> None:
    from chump_tui.monitor import DispatchOutcome
    from chump_tui.reflections import DispatchReflection, SqliteReflectionWriter

    target = tmp_path / "other.db"
    target.write_bytes(b"not ours")
    (tmp_path / "sessions").mkdir()
    (tmp_path / "sessions" / "chump_memory.db").symlink_to(target)
    writer = SqliteReflectionWriter.for_repo(tmp_path)
    with pytest.raises(OSError, match="symbolic link"):
        writer.write(DispatchReflection.build("A-1", "s", DispatchOutcome.shipped(1), 1, 0,
                                              "claude", []))
    assert target.read_bytes() == b"not ours"


@pytest.mark.parametrize("flag,value", [
    ("--tick", "1e10"), ("--tick", "0"), ("--tick", "nan"), ("--kill-grace", "1e10"),
    ("--kill-grace", "inf"), ("--soft-deadline", "1e300"), ("--soft-deadline", "-5"),
    ("--max-parallel", "99999999999"), ("--idle-timeout", "-1"),
    ("--first-output-timeout", "1e10")])
def test_numbers_out_of_range_are_one_line_and_exit_2(tmp_path: Path, flag: str,
                                                      value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", flag, value,
                           "--backlog", str(tmp_path / "none.yaml")], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in done.stderr


# -------------------------------------------------------------- special files, rules
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_as_the_backlog_are_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "gaps.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", str(path)],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2
    assert "not a regular file" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_backlog_linking_out_of_the_repo_is_not_read_by_default(git_repo: Path,
                                                                   tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("gaps:\n  - {id: S-1, title: from outside, priority: P1, status: open}\n")
    (git_repo / "docs").mkdir()
    (git_repo / "docs" / "gaps.yaml").symlink_to(secret)
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui"], cwd=git_repo,
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2 and "links out of the repository" in done.stderr
    assert "from outside" not in done.stdout


@pytest.mark.parametrize("rules", ["dev-zero", "outside", "fifo"])
def test_unusable_rules_file_fails_the_dispatch_before_anything_is_made(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path, rules: str) -> None:
    docs = git_repo / "docs"
    docs.mkdir()
    target = docs / "CHUMP_DISPATCH_RULES.md"
    if rules == "dev-zero":
        target.symlink_to("/dev/zero")
    elif rules == "fifo":
        os.mkfifo(target)
    else:
        (tmp_path / "id_rsa").write_text("PRIVATE KEY\n")
        target.symlink_to(tmp_path / "id_rsa")
    (git_repo / "gaps.yaml").write_text(
        "gaps:\n  - {id: R-1, priority: P1, effort: s, status: open}\n")
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--backlog", "gaps.yaml"], cwd=git_repo, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 1
    failed = [ln for ln in done.stderr.splitlines() if ln.startswith("DISPATCH-FAILED: R-1")]
    assert failed and "CHUMP_DISPATCH_RULES.md" in failed[0]
    assert not (git_repo / ".claude" / "worktrees" / "r-1").exists()
    assert "claude/r-1" not in git(git_repo, "branch", "--list")


def test_a_big_rules_file_reaches_claude_on_stdin(git_repo: Path, stub_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    agent = tmp_path / "stdin-agent.sh"
    agent.write_text('#!/bin/sh\necho "argc=$#"\necho "stdin=$(wc -c)"\n')
    agent.chmod(0o755)
    (git_repo / "docs").mkdir()
    (git_repo / "docs" / "CHUMP_DISPATCH_RULES.md").write_text("rule\n" * 40_000)  # 200 KB
    (git_repo / "gaps.yaml").write_text(
        "gaps:\n  - {id: BIG-1, priority: P1, effort: s, status: open}\n")
    env = {**os.environ, **stub_env, "CHUMP_CLAUDE_BIN": str(agent)}
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--execute",
                           "--watch", "--backlog", "gaps.yaml", "--soft-deadline", "2",
                           "--tick", "0.2"], cwd=git_repo, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "DISPATCHED: BIG-1" in done.stdout, done.stderr
    log = (git_repo / "sessions/chump-tui/logs/big-1-attempt1.log").read_text()
    assert "argc=5" in log  # -p and the four flags, no prompt in argv
    stdin_bytes = int(log.split("stdin=")[1].split()[0])
    assert stdin_bytes > 200_000


# ------------------------------------------------------------------ duplicate ids
def test_duplicates_and_colliding_ids_are_never_dispatched_others_pick_as_before() -> None:
    from chump_tui.backlog import Gap, done_ids
    from chump_tui.picker import pickable_gaps

    gaps = [Gap("A-1", "", "P1", "s", "partial"), Gap("A-1", "", "P1", "s", "open"),
            Gap("X_1", "", "P0", "s", "open"), Gap("x-1", "", "P0", "s", "open"),
            Gap("B-1", "", "P1", "s", "open"), Gap("C-1", "", "P2", "s", "open", ("A-1",)),
            Gap("D-1", "", "P1", "s", "done"), Gap("D-1", "", "P1", "s", "done"),
            Gap("E-1", "", "P1", "s", "open", ("D-1",))]
    done = done_ids(gaps)
    assert done == {"D-1"}  # a dependency on A-1 (one copy partial) is not met
    # E-1 needs D-1: both copies done, so it counts; C-1 needs A-1: one copy is partial.
    assert [g.id for g in pickable_gaps(gaps, 10, done)] == ["B-1", "E-1"]


def test_engine_never_dispatches_a_duplicated_id_in_continuous_mode(tmp_path: Path) -> None:
    from chump_tui.backlog import Gap

    gaps = [Gap("A-1", "", "P1", "s", "open"), Gap("A-1", "", "P1", "s", "open"),
            Gap("B-1", "", "P1", "s", "open")]
    engine = Engine(tmp_path, ScriptSpawner(), ScriptedPrProvider({}), MemoryReflectionWriter(),
                    EngineConfig(max_parallel=5), backlog=gaps)
    assert [g.id for g in engine.pickable_now(5)] == ["B-1"]


async def test_console_shows_why_a_duplicate_is_not_dispatched(tmp_path: Path) -> None:
    from chump_tui.backlog import load_backlog
    from tests.tui_factory import frozen_app, screen_text

    path = tmp_path / "gaps.yaml"
    path.write_text("gaps:\n  - {id: A-1, title: first, priority: P1, effort: s, status: open}\n"
                    "  - {id: A-1, title: second, priority: P1, effort: s, status: partial}\n")
    app = frozen_app()
    app.setup.backlog = load_backlog(path)
    app.by_id = app.setup.backlog.by_id()
    async with app.run_test(size=(140, 30)) as pilot:
        await pilot.pause()
        assert "duplicate id (lines 2, 3)" in screen_text(app)


# ------------------------------------------------------------ stray processes, slow steps
def test_a_daemon_that_left_the_group_is_ended_with_the_agent(tmp_path: Path) -> None:
    import psutil

    from chump_tui.agent_process import AgentProcess

    pidfile = tmp_path / "daemon.pid"
    script = (f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 1000' & "
              "echo started; sleep 1000")
    agent = AgentProcess.spawn(["sh", "-c", script], tmp_path, {"PATH": os.environ["PATH"]},
                               tmp_path / "a.log", OutputLog())
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the daemon")
    daemon = psutil.Process(int(pidfile.read_text()))
    assert os.getpgid(daemon.pid) != agent.pid  # it really left the agent's group
    agent.terminate_group(1.0)
    wait_for(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE, 10,
             "the daemon to be gone")


def test_a_daemon_orphaned_before_the_kill_is_found_by_its_marker(tmp_path: Path) -> None:
    import psutil

    from chump_tui.agent_process import AgentProcess

    pidfile = tmp_path / "daemon.pid"
    # The agent's shell starts the daemon in a new session, then exits its own child:
    # the daemon is reparented to init before anyone kills anything.
    script = (f"(setsid sh -c 'echo $$ > {pidfile}; exec sleep 1000' &) ; sleep 1000")
    agent = AgentProcess.spawn(["sh", "-c", script], tmp_path, {"PATH": os.environ["PATH"]},
                               tmp_path / "a.log", OutputLog())
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the daemon")
    daemon = psutil.Process(int(pidfile.read_text()))
    wait_for(lambda: daemon.ppid() != agent.pid, 10, "the daemon orphaned")
    agent.terminate_group(1.0)
    wait_for(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE, 10,
             "the orphaned daemon to be gone")


def test_quit_during_a_slow_claim_ends_it_and_starts_no_agent(git_repo: Path,
                                                              stub_env: dict[str, str]) -> None:
    import threading

    import psutil

    from chump_tui.backlog import Gap
    from chump_tui.spawners import RealSpawner

    mine = f"sleep 120.{os.getpid()}{time.monotonic_ns() % 10**6}"  # only this test's
    scripts = git_repo / "scripts"
    scripts.mkdir()
    (scripts / "gap-claim.sh").write_text(f"#!/bin/sh\necho claiming >&2\n{mine}\n")
    git(git_repo, "add", "scripts")
    git(git_repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "claim")
    git(git_repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    environ = dict(os.environ)
    engine = Engine(git_repo, RealSpawner(git_repo, environ), ScriptedPrProvider({}),
                    MemoryReflectionWriter(), EngineConfig(kill_grace_s=0.5, environ=environ),
                    backlog=[Gap("SLOW-1", "", "P1", "s", "open")])
    engine.start()
    worker = threading.Thread(target=engine.dispatch, args=([Gap("SLOW-1", "", "P1", "s",
                                                                   "open")],))
    worker.start()
    def claim_running() -> bool:
        return any(mine in " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"]))

    wait_for(claim_running, 20, "the claim script running")
    started = time.monotonic()
    engine.stop_all("stopped at quit", grace_s=0.5)
    worker.join(10)
    engine.close()
    assert time.monotonic() - started < 10
    (row,) = engine.snapshot()
    assert row.phase == "spawn_failed" and "quitting" in row.error and row.pid is None
    wait_for(lambda: not claim_running(), 5, "the claim script's group gone")


def test_a_hanging_gh_holds_up_no_exit_or_deadline(tmp_path: Path, stub_env: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from chump_tui.pr_providers import GhPrProvider

    monkeypatch.setenv("STUB_GH_MODE", "hang")
    engine = Engine(tmp_path, ScriptSpawner({"H-1": "exit 4"}),
                    GhPrProvider(tmp_path, environ=dict(os.environ), timeout_s=60),
                    MemoryReflectionWriter(), EngineConfig(tick_s=0.1, kill_grace_s=0.2),
                    backlog=[gap("H-1")])
    engine.start()
    started = time.monotonic()
    try:
        engine.dispatch([gap("H-1")])
        wait_for(lambda: engine.snapshot()[0].outcome is not None, 10, "the exit recorded")
        assert time.monotonic() - started < 5  # not after gh's 60 s timeout
        assert engine.snapshot()[0].outcome == DispatchOutcome.killed("exit code 4")
    finally:
        engine.close()


def test_a_timed_out_gh_leaves_no_process_behind(tmp_path: Path) -> None:
    import psutil

    from chump_tui.pr_providers import GhPrProvider, PrProviderError

    mine = f"300.{os.getpid()}{time.monotonic_ns() % 10**6}"  # only this test's sleeps
    gh = tmp_path / "gh"
    gh.write_text(f"#!/bin/sh\nsleep {mine} &\nsleep {mine}\n")
    gh.chmod(0o755)
    provider = GhPrProvider(tmp_path, gh=str(gh), timeout_s=0.5)
    with pytest.raises(PrProviderError, match="timed out"):
        provider.poll(["claude/x"])
    wait_for(lambda: not [p for p in psutil.process_iter(["cmdline"])
                          if (p.info["cmdline"] or [])[-2:] == ["sleep", mine]], 5,
             "gh's children gone")
