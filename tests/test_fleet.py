"""The fleet over NATS: the wire format both ways, and real workers, a real nats-server,
real clones of a temp origin, the stand-in agent and a stub gh."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chump_tui.agent_process import group_has_live_member
from chump_tui.fleet import wire
from tests.conftest import HELPERS, gh_calls, saved_rows, saved_text, wait_for
from tests.fleet_rig import (
    WorkerProcess,
    end_workers_and_agents,
    free_port,
    member_args,
    member_env,
    nats_server,
    origin_with_clones,
    start_worker,
    started_console,
    wait_exit,
)


def fleet_gaps(n: int) -> str:
    return "gaps:\n" + "".join(
        f"  - {{id: FLEET-00{i}, title: gap {i}, priority: P1, effort: s, status: open}}\n"
        for i in range(1, n + 1))


SIX_GAPS = fleet_gaps(6)


@pytest.fixture(autouse=True)
def no_worker_or_agent_outlives_its_test() -> Iterator[None]:
    yield
    end_workers_and_agents()


def assert_all_shipped(run: subprocess.Popen[str], n: int,
                       timeout: float = 180) -> tuple[str, str]:
    """The console's run ended well with n shipped; its stdout and stderr."""
    out, err = run.communicate(timeout=timeout)
    assert run.returncode == 0, out + err
    assert f"shipped={n}  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out, out + err
    return out, err


def assert_logs_whole(console_repo: Path, n: int, mode: str = "full") -> None:
    """``full``: each attempt's mirrored log holds its agent's output once, no line lost or
    repeated. ``summary``: no log came (nobody watched in plain mode), and no attempt's
    reflection kept its agent's warning twice (the fake agent's PR merges before it exits,
    so a reflection may be written before its last summary, which carries the warnings of
    the whole log, arrives)."""
    logs = sorted((console_repo / "sessions" / "chump-tui" / "logs").glob("*.log"))
    if mode == "summary":
        assert logs == []
        notes = sqlite3.connect(console_repo / "sessions" / "chump_memory.db").execute(
            "SELECT hypothesis FROM chump_reflections").fetchall()
        assert len(notes) == n and all(row[0].count("WARN: pretend warning") <= 1
                                       for row in notes), notes
        return
    assert len(logs) == n
    for log in logs:
        text = log.read_text()
        assert text.count("WARN: pretend warning") == 1 and "not received" not in text


# ------------------------------------------------------------------ wire format
def test_every_message_survives_the_wire_both_ways() -> None:
    messages: list[wire.DispatchRequest | wire.AgentReport | wire.KillRequest] = [
        wire.DispatchRequest(uid="u1", key="G-1#1", gap_id="G-1", origin="git@h:o/r.git",
                             base_ref="origin/main", harness="codex", console="c",
                             expires_at=1.5, title="t"),
        wire.AgentReport(kind="output", uid="u1", worker="w", host="w", offset=7,
                         data=b"\x00\xff{\"type\":1}\n"),
        wire.AgentReport(kind="spawned", uid="u1", worker="w", host="w", pid=42,
                         start_time=3.25, harness="claude", backend="claude", note="n"),
        wire.AgentReport(kind="exited", uid="u1", worker="w", host="w", code=-1),
        wire.KillRequest(uid="u1", grace_s=2.0),
    ]
    for message in messages:
        assert wire.decode(wire.encode(message)) == message
        assert json.loads(wire.encode(message))["v"] == wire.WIRE_VERSION
    record = wire.WorkerRecord(worker_id="w", backend="chump-tui", machine="m", harness="claude",
                               started_at="s", status="active", updated_at="u", busy=["u1"])
    assert wire.WorkerRecord.from_bytes(record.to_bytes()) == record


def test_upstream_claims_read_and_written_in_its_format() -> None:
    # As chump-coord writes it (files optional), and as we write it.
    theirs = b'{"session_id":"sess-upstream","claimed_at":"2026-11-25T06:00:00Z"}'
    assert wire.Claim.from_bytes(theirs) == wire.Claim("sess-upstream", "2026-11-25T06:00:00Z")
    ours = json.loads(wire.Claim("s", wire.rfc3339(0)).to_bytes())
    assert ours == {"session_id": "s", "claimed_at": "1970-01-01T00:00:00.000000Z", "files": []}
    event = json.loads(wire.coord_event("DONE", "s", gap="G-1"))
    assert set(event) == {"event", "session", "ts", "gap"} and event["event"] == "DONE"


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b'{"v": 2, "kind": "kill", "uid": "u", "grace_s": 1}',
    b'{"v": 1, "kind": "launch"}', b'{"v": 1, "kind": "kill", "uid": 5, "grace_s": 1}',
    b'{"v": 1, "kind": "exited", "uid": "u", "worker": "w", "host": "h", "code": true}',
    b'{"v": 1, "kind": "output", "uid": "u", "worker": "w", "host": "h", "data": "%%%"}',
    b"\xff\xfe", b"{" * 10 + b"}" * 10, b"x" * (wire.MAX_MESSAGE_BYTES + 1),
])
def test_malformed_or_foreign_messages_are_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(data)


def test_one_repository_whatever_its_url_says() -> None:
    same = ["https://github.com/o/r.git", "git@github.com:o/r", "ssh://git@github.com/o/r/",
            "https://user:tok3n@github.com/o/r.git"]
    assert len({wire.repo_key(u) for u in same}) == 1
    assert wire.repo_key("https://github.com/o/other") != wire.repo_key(same[0])


# ------------------------------------------------------------------ real server
def fleet_env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    gh = bindir / "gh"
    gh.write_text(f"#!/bin/sh\nexec {sys.executable} {HELPERS / 'stub_gh.py'} \"$@\"\n")
    gh.chmod(0o755)
    state = tmp_path / "gh-state.txt"
    state.touch()
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "STUB_GH_STATE": str(state),
            "STUB_GH_LOG": str(tmp_path / "gh-calls.log"),
            "CHUMP_CLAUDE_BIN": str(HELPERS / "fake_agent.sh"),
            "FAKE_AGENT_MODE": "slow", "FAKE_AGENT_SECONDS": "1.5",
            "CHUMP_DISPATCH_DEPTH": "", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def console(clone: Path, url: str, env: dict[str, str], *args: str,
            timeout: float = 120) -> subprocess.Popen[str]:
    """Plain mode on the fleet, as the running fleet's console identity."""
    return started_console(subprocess.Popen(
        [sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", "gaps.yaml", "--execute",
         "--nats", url, *member_args("console"), *args], cwd=clone,
        env={**os.environ, **member_env(), **env}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))


def two_agents_on_w1(tmp_path: Path, url: str, seconds: int, heartbeat: float = 1.0,
                     mode: str = "summary", **extra: str) -> tuple[
        dict[str, Path], dict[str, str], WorkerProcess, subprocess.Popen[str]]:
    """One worker, a console on two gaps, both agents running (for SECONDS) when it returns."""
    repos = origin_with_clones(tmp_path, "console", "w1",
                               files={"gaps.yaml": fleet_gaps(2)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": str(seconds), **extra}
    worker = start_worker(url, repos["w1"], "w1", env, heartbeat=heartbeat)
    run = console(repos["console"], url, env, "--watch", "--tick", "0.3", "--fleet-output", mode)
    wait_for(lambda: worker.output().count(" as PID ") == 2, 60, "two agents started")
    return repos, env, worker, run


def test_two_workers_ship_six_gaps_each_once(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": SIX_GAPS})
    env = fleet_env(tmp_path)
    with nats_server(tmp_path) as server:
        workers = [start_worker(server.url, repos[n], n, env) for n in ("w1", "w2")]
        broker = server.client()
        key = wire.repo_key(str(repos["origin"]))
        # Garbage on both our subjects first: logged and dropped, never fatal.
        broker.publish(wire.dispatch_subject(key), b"\x00 not a request")
        intruder = server.client("intruder")  # a worker identity: its own subject only
        intruder.publish(wire.agents_subject(key, "intruder"), b'{"v": 99}')
        intruder.close()
        events: list[dict[str, str]] = []

        async def on_event(msg: object) -> None:
            events.append(json.loads(msg.data))  # type: ignore[attr-defined]
        broker.subscribe("chump.events.>", on_event)
        run = console(repos["console"], server.url, env, "--watch", "--continuous",
                      "--max-parallel", "4", "--tick", "0.3")
        claims_seen: dict[str, wire.Claim] = {}

        def claims_and_workers() -> bool:
            claims_seen.update(broker.claims())
            return len(claims_seen) >= 2
        wait_for(claims_and_workers, 60, "claims in chump_gaps while agents run")
        raw = broker.kv_get(broker.gap_bucket, wire.gap_key(next(iter(claims_seen))))
        assert raw is not None and set(json.loads(raw)) == {"session_id", "claimed_at", "files"}
        def presence() -> dict[str, wire.WorkerRecord]:
            return {name: wire.WorkerRecord.from_bytes(data)
                    for name, data in broker.kv_items(broker.workers_bucket).items()}
        # A key listing can come back short under load: read until both records are seen.
        wait_for(lambda: {"w1", "w2"} <= set(presence()), 10, "both presence records")
        live = presence()
        assert {"w1", "w2"} <= set(live) and all(w.status == "active" for w in live.values())
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        for i in range(1, 7):
            assert out.count(f"DISPATCHED: FLEET-00{i} ") == 1, out
            assert f"  SHIPPED   claude/fleet-00{i}  PR #" in out
        assert "shipped=6  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out
        hosts = {line.rsplit(" on ", 1)[1] for line in out.splitlines()
                 if line.startswith("DISPATCHED: ")}
        assert hosts == {"w1", "w2"}, out  # spread over both
        # Shipped gaps keep their claims until upstream's TTL: no console runs them again.
        held = {gid: c.session_id for gid, c in broker.claims().items()
                if gid.startswith("FLEET")}
        assert set(held) == {f"FLEET-00{i}" for i in range(1, 7)}
        assert all(session.startswith("chump-tui:") for session in held.values())
        rows = sqlite3.connect(repos["console"] / "sessions" / "chump_memory.db").execute(
            "SELECT COUNT(*) FROM chump_reflections").fetchone()[0]
        assert rows == 6
        assert all(c.startswith("pr list") for c in gh_calls(env))  # one call per poll
        # Upstream's coordination events: a worker's INTENT per gap, the console's DONE.
        wait_for(lambda: sum(e["event"] == "DONE" for e in events) == 6, 10, "DONE events")
        assert sorted(e["gap"] for e in events if e["event"] == "DONE") == [
            f"FLEET-00{i}" for i in range(1, 7)]
        assert sum(e["event"] == "INTENT" for e in events) == 6
        assert all(set(e) <= {"event", "session", "ts", "gap", "reason", "commit"}
                   for e in events)
        # The agents' commits are on their branches in the workers' clones.
        for w in workers:
            assert "dropped a malformed dispatch request" in "".join(
                x.output() for x in workers)
            w.stop()
        broker.close()


def test_a_claim_upstream_holds_is_never_dispatched(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console", "w1",
                               files={"gaps.yaml": fleet_gaps(2)})
    env = fleet_env(tmp_path)
    with nats_server(tmp_path) as server:
        broker = server.client()
        broker.claim("FLEET-001", wire.Claim("upstream-session-7", "2026-11-25T06:00:00Z"))
        worker = start_worker(server.url, repos["w1"], "w1", env)
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3")
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert "DISPATCHED: FLEET-001" not in out and "DISPATCHED: FLEET-002" in out
        assert ("FLEET-001 not dispatched: claimed in chump_gaps by upstream-session-7 "
                "since 2026-11-25T06:00:00Z") in err
        claim = broker.claim_of("FLEET-001")
        assert claim is not None and claim.session_id == "upstream-session-7"  # untouched
        worker.stop()
        broker.close()


def test_no_server_is_one_line_and_exit_2(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console",
                               files={"gaps.yaml": SIX_GAPS})
    url = f"nats://someone:s3cret-token@127.0.0.1:{free_port()}"
    # No start-up wait: one line (test_a_worker_started_before_its_broker_waits_for_it).
    env = {**fleet_env(tmp_path), "CHUMP_NATS_STARTUP_WAIT": "0"}
    run = console(repos["console"], url, env, "--watch")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 2
    assert "Traceback" not in err and "s3cret" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1" in lines[0] and "NATS" in lines[0], err
    worker = subprocess.run(
        [sys.executable, "-m", "chump_tui", "worker", "--nats", url, "--repo-root",
         str(repos["console"])], capture_output=True, text=True, timeout=60,
        env={**os.environ, "CHUMP_NATS_STARTUP_WAIT": "0"})
    assert worker.returncode == 2 and len(worker.stderr.strip().splitlines()) == 1
    assert "Traceback" not in worker.stderr and "s3cret" not in worker.stderr


def test_a_worker_killed_with_9_loses_its_agent_and_frees_its_claim(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console", "w1",
                               files={"gaps.yaml": fleet_gaps(1)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_MODE": "hang"}
    with nats_server(tmp_path) as server:
        broker = server.client()
        worker = start_worker(server.url, repos["w1"], "w1", env, heartbeat=0.5)
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3")
        wait_for(lambda: "as PID" in worker.output(), 60, "the agent to start")
        assert "FLEET-001" in broker.claims()
        worker.process.send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=120)
        assert "KILLED    claude/fleet-001" in out and "on w1" in out, out + err
        assert "LOST (host w1 silent" in out + err
        assert "FLEET-001" not in broker.claims()
        broker.close()
        wait_exit(worker.process, 5)
        # The agent itself outlived its worker (its own session): stop it.
        state = json.loads((repos["w1"] / "sessions" / "chump-tui-worker" / "w1.json")
                           .read_text())
        for row in state["agents"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(row["pid"], signal.SIGKILL)


async def test_console_shows_hosts_and_kills_on_the_right_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chump_tui.cli import parse_args
    from chump_tui.tui.app import ChumpApp
    from chump_tui.tui.launch import repo_setup
    from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
    from chump_tui.tui.screens.confirm_kill import ConfirmKill
    from chump_tui.tui.widgets.dispatch_card import DispatchCard
    from tests.tui_factory import close_app, screen_text, until

    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(2)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_MODE": "hang"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with nats_server(tmp_path) as server:
        for name, value in member_env().items():
            monkeypatch.setenv(name, value)
        # One slot each: the second request must go to the other host.
        workers = {n: start_worker(server.url, repos[n], n, env, max_parallel=1)
                   for n in ("w1", "w2")}
        setup = repo_setup(parse_args([
            "--backlog", str(repos["console"] / "gaps.yaml"), "--repo-root",
            str(repos["console"]), "--execute", "--nats", server.url, *member_args("console"),
            "--kill-grace", "1", "--tick", "0.3", "--max-parallel", "2"]))
        app = ChumpApp(setup)
        try:
            async with app.run_test(size=(160, 50)) as pilot:
                await until(pilot, lambda: app.fleet_hosts() == [("w1", 1, 1), ("w2", 1, 1)],
                            20, "both hosts up")
                await pilot.press("a", "d")
                await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
                assert "hosts up: w1 1/1 free, w2 1/1 free" in screen_text(app)
                await pilot.press("enter")
                await until(pilot, lambda: len(app.dispatches) == 2 and all(
                    d.label() == "RUNNING" and d.host for d in app.dispatches.values()),
                    60, "both agents running")
                by_host = {d.host: d for d in app.dispatches.values()}
                assert set(by_host) == {"w1", "w2"}

                def card_text(key: str) -> str:  # "" until the monitor shows the card
                    card = next((c for c in app.screen.query(DispatchCard) if c.key == key),
                                None)
                    return card.drawn_text() if card is not None else ""

                await until(pilot, lambda: "@w2" in card_text(by_host["w2"].key)
                            and "@w1" in card_text(by_host["w1"].key), 10, "host badges")
                victim, bystander = by_host["w2"], by_host["w1"]
                while app.screen.selected != victim.key:  # type: ignore[attr-defined]
                    await pilot.press("right")
                await pilot.press("ctrl+k")
                await until(pilot, lambda: isinstance(app.screen, ConfirmKill), 5, "kill dialog")
                await pilot.press("y")
                await until(pilot, lambda: app.dispatches[victim.key].label() == "KILLED", 30,
                            "the w2 agent killed over the wire")
                assert victim.pid is not None and bystander.pid is not None
                # Its whole group, on its host; the other host's agent runs on.
                assert not group_has_live_member(victim.pid)
                assert group_has_live_member(bystander.pid)
                assert app.dispatches[bystander.key].label() == "RUNNING"
                os.killpg(bystander.pid, signal.SIGKILL)
                await until(pilot, lambda: app.dispatches[bystander.key].outcome is not None,
                            30, "the other agent's end")
                await pilot.press("s")  # the summary says where each attempt ran
                await until(pilot, lambda: "claude/fleet-001 @" in screen_text(app)
                            and "claude/fleet-002 @" in screen_text(app), 10, "hosts")
        finally:
            close_app(app)
            for w in workers.values():
                w.stop()


@pytest.mark.parametrize("mode", ["summary", "full"])
def test_console_killed_mid_run_replays_and_records_each_outcome_once(
        tmp_path: Path, mode: str) -> None:
    repos = origin_with_clones(tmp_path, "console", "w1",
                               files={"gaps.yaml": fleet_gaps(3)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "4"}
    with nats_server(tmp_path) as server:
        worker = start_worker(server.url, repos["w1"], "w1", env, max_parallel=3)
        first = console(repos["console"], server.url, env, "--watch", "--max-parallel", "3",
                        "--tick", "0.3", "--fleet-output", mode)
        state = repos["console"] / "sessions" / "chump-tui" / "state.json"

        def recorded_running() -> bool:  # the console saved all three as running on w1
            rows = saved_rows(state.parent)
            return sum(1 for r in rows if r["phase"] == "running" and r.get("remote")) == 3
        wait_for(recorded_running, 60, "three agents started and recorded")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        # The agents finish while no console watches; the next one replays the stream.
        again = console(repos["console"], server.url, env, "--watch", "--max-parallel", "3",
                        "--tick", "0.3", "--fleet-output", mode)
        out, err = assert_all_shipped(again, 3)
        assert "re-attached 3 agent(s)" in err
        assert "DISPATCHED:" not in out  # nothing dispatched twice
        assert "not dispatched: claimed" not in err  # its own claims are no conflict
        rows = sqlite3.connect(repos["console"] / "sessions" / "chump_memory.db").execute(
            "SELECT intended_goal FROM chump_reflections ORDER BY intended_goal").fetchall()
        assert rows == [(f"ship gap FLEET-00{i}",) for i in range(1, 4)]
        assert_logs_whole(repos["console"], 3, mode)
        worker.stop()


def test_a_console_killed_while_its_host_starts_the_agent_finds_the_agent_again(
        tmp_path: Path) -> None:
    """Killed after its request went out and before the host said it started the agent,
    the next console waits for the host's answer (replayed) instead of losing the agent."""
    claiming, release = tmp_path / "claiming", tmp_path / "release"
    repos = origin_with_clones(tmp_path, "console", "w1", files={
        "scripts/gap-claim.sh": f"touch {claiming}\n"
                                f"while [ ! -e {release} ]; do sleep 0.05; done\n",
        "gaps.yaml": fleet_gaps(1)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "2"}
    with nats_server(tmp_path) as server:
        worker = start_worker(server.url, repos["w1"], "w1", env)
        first = console(repos["console"], server.url, env, "--watch", "--tick", "0.3")
        wait_for(claiming.exists, 60, "w1 running the gap's claim script")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        release.touch()
        wait_for(lambda: " as PID " in worker.output(), 60, "w1 starting the agent")
        again = console(repos["console"], server.url, env, "--watch", "--tick", "0.3")
        _out, err = assert_all_shipped(again, 1)
        assert "FLEET-001#1: was being dispatched when the console stopped; waiting" in err
        assert worker.output().count(" as PID ") == 1  # the one agent, found again
        rows = sqlite3.connect(repos["console"] / "sessions" / "chump_memory.db").execute(
            "SELECT intended_goal FROM chump_reflections").fetchall()
        assert rows == [("ship gap FLEET-001",)]
        worker.stop()


@pytest.mark.parametrize("mode", ["summary", "full"])
def test_a_restarted_worker_reattaches_its_agents_without_duplicates(
        tmp_path: Path, mode: str) -> None:
    with nats_server(tmp_path) as server:
        repos, env, worker, run = two_agents_on_w1(tmp_path, server.url, 8, mode=mode)
        worker.stop()  # SIGTERM: it leaves its agents running
        assert "2 agent(s) left running" in worker.output()
        back = start_worker(server.url, repos["w1"], "w1", env, heartbeat=1.0)
        assert "2 agent(s) re-attached" in back.output(), back.output()
        assert "ended while the worker was down" not in back.output()  # both still ran
        out, _err = assert_all_shipped(run, 2)
        assert out.count("DISPATCHED:") == 2
        assert_logs_whole(repos["console"], 2, mode)
        back.stop()


@pytest.mark.parametrize("mode", ["summary", "full"])
def test_a_broker_restart_loses_nothing(tmp_path: Path, mode: str) -> None:
    with nats_server(tmp_path) as server:
        repos, _env, worker, run = two_agents_on_w1(tmp_path, server.url, 6, mode=mode)
        server.restart()  # while both agents run: their output and exits come later
        assert_all_shipped(run, 2)
        assert_logs_whole(repos["console"], 2, mode)
        worker.stop()


def test_a_three_server_cluster_goes_on_when_one_dies(tmp_path: Path) -> None:
    from tests.fleet_rig import nats_cluster, wait_for_jetstream

    with nats_cluster(tmp_path) as cluster:
        wait_for_jetstream(cluster)
        # The silence window (4 heartbeats: 12 s here, 20 s by default) must outlast the
        # cluster's failover (a new leader for each stream and bucket, the worker's
        # reconnect): a loaded 2-core machine took more than 4 s.
        _repos, _env, worker, run = two_agents_on_w1(tmp_path, cluster.url, 8, heartbeat=3.0,
                                                     CHUMP_NATS_REPLICAS="3")
        cluster.servers[0].stop()
        assert_all_shipped(run, 2)
        worker.stop()


def test_credentials_are_used_and_never_shown(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console",
                               files={"gaps.yaml": SIX_GAPS})
    missing = tmp_path / "nope.creds"
    run = console(repos["console"], "nats://127.0.0.1:4222", fleet_env(tmp_path), "--watch",
                  "--nats-creds", str(missing))
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 2 and err.strip() == (
        f"chump-tui: {missing}: NATS credentials file not found"), err


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test certificates)")
    ca_key, ca, key, csr, cert = (directory / n for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
             str(ca), "-days", "2", "-subj", "/CN=chump-tui test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)]):
        subprocess.run(["openssl", *argv], check=True, capture_output=True)
    return ca, cert, key


def test_tls_urls_connect_over_tls_and_an_untrusted_server_is_one_line(tmp_path: Path) -> None:
    ca, cert, key = certificates(tmp_path)
    repos = origin_with_clones(tmp_path, "console", "w1",
                               files={"gaps.yaml": fleet_gaps(1)})
    with nats_server(tmp_path, scheme="tls",
                     extra=("--tls", "--tlscert", str(cert), "--tlskey", str(key))) as server:
        # Not trusted (the system's CA store does not know our CA): refused, one line.
        refused = console(repos["console"], server.url, fleet_env(tmp_path), "--watch")
        _out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2, err
        assert len(err.strip().splitlines()) == 1 and "cannot connect to NATS" in err, err
        assert "Traceback" not in err
        # Trusted through the standard OpenSSL variable: the fleet works over TLS.
        env = {**fleet_env(tmp_path), "SSL_CERT_FILE": str(ca)}
        worker = start_worker(server.url, repos["w1"], "w1", env)
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3")
        out, _err = assert_all_shipped(run, 1)
        assert "on w1" in out
        worker.stop()


@pytest.mark.parametrize("mode", ["summary", "full"])
def test_a_worker_running_the_real_claude_sends_its_activity_and_cost(
        tmp_path: Path, model_servers: list[object], mode: str) -> None:
    import re

    from tests.agent_clis import agent_cli
    from tests.test_real_claude import claude_env, ship_plan, start

    claude = agent_cli("claude")
    _model, server = start(model_servers, ship_plan)  # type: ignore[arg-type]
    repos = origin_with_clones(tmp_path, "console", "w1",
                               files={"gaps.yaml": fleet_gaps(2)})
    env = {**fleet_env(tmp_path), **claude_env(server, tmp_path, claude)}
    with nats_server(tmp_path) as nats:
        worker = start_worker(nats.url, repos["w1"], "w1", env)
        run = console(repos["console"], nats.url, env, "--watch", "--tick", "0.5",
                      "--fleet-output", mode)
        out, err = run.communicate(timeout=240)
        worker.stop()
    assert run.returncode == 0, out + err[-3000:]
    assert "shipped=2  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out, out
    agents = out.split("=== agents ===")[1]
    assert agents.count("3 turns") == 2 and "claude" in agents
    assert re.search(r"cost=\$\d+\.\d{4}  turns=6", agents), agents
    logs = list((repos["console"] / "sessions" / "chump-tui" / "logs").glob("*-attempt1.log"))
    if mode == "summary":  # its turns and cost came in summaries; its log stayed on w1
        assert logs == []
        on_w1 = list((repos["w1"] / "sessions" / "chump-tui-worker" / "logs").glob("*.log"))
        assert len(on_w1) == 2 and all('"type":"result"' in p.read_text().replace(" ", "")
                                       for p in on_w1)
    else:  # the stream-json the agent wrote on w1 is mirrored here, whole, for the parsers
        assert '"type":"result"' in logs[0].read_text().replace(" ", "")


def test_a_cut_off_host_is_lost_redispatched_and_stopped_when_it_returns(tmp_path: Path) -> None:
    from chump_tui.agent_process import group_has_live_member

    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(1)})
    env = fleet_env(tmp_path)
    with nats_server(tmp_path) as server:
        w1 = start_worker(server.url, repos["w1"], "w1", {**env, "FAKE_AGENT_MODE": "hang"})
        run = console(repos["console"], server.url, env, "--watch", "--continuous",
                      "--max-parallel", "1", "--tick", "0.3")
        wait_for(lambda: " as PID " in w1.output(), 60, "the agent on w1")
        pid = int(w1.output().split(" as PID ")[1].split()[0])
        w2 = start_worker(server.url, repos["w2"], "w2", {**env, "FAKE_AGENT_SECONDS": "3"})
        w1.process.send_signal(signal.SIGSTOP)  # cut off: no heartbeat, nothing published
        try:
            wait_for(lambda: " as PID " in w2.output(), 60, "attempt 2 on w2")
        finally:
            w1.process.send_signal(signal.SIGCONT)  # back: its agent must not go on
        wait_for(lambda: "now; stopping it" in w1.output(), 30, "w1 stopping its agent")
        wait_for(lambda: not group_has_live_member(pid), 30, "w1's agent gone")
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert "KILLED    claude/fleet-001  LOST (host w1 silent" in out, out
        assert "SHIPPED   claude/fleet-001  PR #" in out and out.rstrip().count("on w2") >= 1
        assert "shipped=1  ci_failed=0  stalled=0  killed=1  spawn_failures=0" in out
        for w in (w1, w2):
            w.stop()


def test_a_host_back_from_silence_has_its_agent_followed_again_not_duplicated(
        tmp_path: Path) -> None:
    """Not dispatched again meanwhile (no --continuous), the lost agent that still runs on
    its host is followed again as the gap's next attempt and its outcome recorded."""
    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(2)})
    env = fleet_env(tmp_path)
    session = repos["console"] / "sessions" / "chump-tui"

    def saved() -> str:  # the table and the settled rows (a LOST row settles once reflected)
        return saved_text(session)

    with nats_server(tmp_path) as server:
        # One slot each, so each host runs one gap; w2's agent keeps the console watching.
        w1 = start_worker(server.url, repos["w1"], "w1", {**env, "FAKE_AGENT_SECONDS": "12"},
                          max_parallel=1)
        w2 = start_worker(server.url, repos["w2"], "w2", {**env, "FAKE_AGENT_SECONDS": "30"},
                          max_parallel=1)
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3",
                      "--max-parallel", "2")
        wait_for(lambda: " as PID " in w1.output() and " as PID " in w2.output(), 60,
                 "an agent on each host")
        w1.process.send_signal(signal.SIGSTOP)  # cut off: no heartbeat, nothing published
        try:
            wait_for(lambda: "LOST (host w1 silent" in saved(), 60, "w1's agent given up as LOST")
        finally:
            w1.process.send_signal(signal.SIGCONT)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        lost = re.search(r"KILLED    (claude/fleet-00\d)  LOST \(host w1 silent", out)
        assert lost is not None, out
        assert out.count(f"SHIPPED   {lost.group(1)}  PR #") == 1, out  # attempt 2, on w1
        assert "shipped=2  ci_failed=0  stalled=0  killed=1  spawn_failures=0" in out, out
        assert w1.output().count(" as PID ") == 1 and "stopping it" not in w1.output()
        assert w2.output().count(" as PID ") == 1
        for w in (w1, w2):
            w.stop()


def test_a_round_of_reports_is_packed_into_few_messages_and_read_back_in_order() -> None:
    reports = [wire.AgentReport(kind="output", uid=f"u{i}", worker="w", host="w", offset=i,
                                data=bytes([i % 256]) * 100_000) for i in range(12)]
    messages = wire.encode_reports(reports)
    assert 1 < len(messages) < len(reports)  # packed, and split under the size limit
    assert all(len(m) <= wire.MAX_MESSAGE_BYTES for m in messages)
    assert [r for m in messages for r in wire.decode_reports(m)] == reports
    with pytest.raises(wire.WireError):
        wire.decode_reports(b'{"v": 1, "kind": "batch", "reports": [{"kind": "launch"}]}')
    with pytest.raises(wire.WireError):
        wire.decode_reports(wire.encode(wire.KillRequest(uid="u", grace_s=1.0)))
