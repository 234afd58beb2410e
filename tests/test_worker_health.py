"""A worker's health and fence, and how a console judges silence, each on its own: a fake
clock for the windows, real processes for pausing, real signed presence records."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from chump_tui.agent_process import AgentProcess, OutputLog
from chump_tui.fleet import wire
from chump_tui.fleet.broker import FleetError
from chump_tui.fleet.identity import TrustList, from_seed, new_seed
from chump_tui.fleet.remote import LOOK_EVERY_S, FleetClient
from chump_tui.fleet.worker_health import Fence, HostHealth
from chump_tui.fleet.worker_keys import WorkerKeys
from tests.conftest import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_starts_degrade_a_host_until_a_probe_succeeds() -> None:
    clock, said = Clock(), []
    problem: list[str | None] = ["cannot make a worktree in /r/.claude/worktrees: Not a dir"]
    health = HostHealth(lambda: problem[0], said.append, degrade_after=3, probe_every_s=30,
                        clock=clock)
    health.start_failed("git worktree add failed")
    health.started()  # a success in between: the count starts over
    health.start_failed("git worktree add failed")
    health.start_failed("git worktree add failed")
    assert health.may_take_work() and not health.reason
    health.start_failed("git worktree add failed (read-only file system)")
    assert health.reason.startswith("3 starts failed in a row (last: git worktree add")
    assert not health.may_take_work()  # no probe before its time
    clock.now += 31
    assert not health.may_take_work()  # the probe fails: still degraded, saying why
    assert "probe: cannot make a worktree" in health.reason
    problem[0] = None
    assert not health.may_take_work()  # the next probe is 30 s away
    clock.now += 31
    assert health.may_take_work() and health.reason == ""
    assert any("degraded:" in s for s in said) and any("healthy again" in s for s in said)


def test_a_failing_fetch_degrades_at_once() -> None:
    health = HostHealth(lambda: None, lambda _: None, clock=Clock())
    health.cannot_fetch("fatal: could not read from remote repository")
    assert health.reason.startswith("git fetch origin failed (fatal: could not read")
    assert not health.may_take_work()


def sleeper(tmp_path: Path) -> AgentProcess:
    return AgentProcess.spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path,
                              {}, tmp_path / "agent.log", OutputLog())


def status(process: AgentProcess) -> str:
    return str(psutil.Process(process.pid).status())


def test_a_cut_off_worker_pauses_its_agents_after_two_heartbeats_and_resumes_them(
        tmp_path: Path) -> None:
    clock, stopped = Clock(), []
    agent = sleeper(tmp_path)
    try:
        fence = Fence(5.0, "pause", lambda: [("u1", agent)],
                      lambda uid, p: stopped.append(uid), lambda _: None, clock=clock)
        clock.now += 9.9
        fence.check()
        assert not fence.fenced and status(agent) != psutil.STATUS_STOPPED
        clock.now += 0.2  # two heartbeats without a presence record the broker took
        fence.check()
        assert fence.fenced and fence.is_paused("u1")
        wait_for(lambda: status(agent) == psutil.STATUS_STOPPED, 5, "the agent paused")
        fence.renewed()
        fence.lift(lambda uid: True)
        wait_for(lambda: status(agent) != psutil.STATUS_STOPPED, 5, "the agent going on")
        assert not fence.fenced and not stopped
    finally:
        agent.kill_now()


def test_in_stop_mode_a_cut_off_worker_stops_its_agents(tmp_path: Path) -> None:
    clock, stopped = Clock(), []
    agent = sleeper(tmp_path)
    try:
        fence = Fence(1.0, "stop", lambda: [("u1", agent)],
                      lambda uid, p: stopped.append(uid), lambda _: None, clock=clock)
        clock.now += 2.5
        fence.check()
        fence.check()  # once
        assert stopped == ["u1"] and not fence.is_paused("u1")
    finally:
        agent.kill_now()


# ------------------------------------------------------------------ judging silence
class Bucket:
    """The workers bucket as the console reads it: the records, or a failed read."""

    workers_bucket = wire.WORKERS_BUCKET
    identity = None

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.failing = False

    def kv_items(self, bucket: str) -> dict[str, bytes]:
        if self.failing:
            raise FleetError("nats://broker: no answer within 10s")
        return dict(self.items)

    def call_soon(self, call: object) -> None:
        pass


def presence(identity: object, beat: int) -> bytes:
    record = wire.WorkerRecord(
        worker_id="w1", backend="chump-tui", machine="h", harness="claude",
        started_at="2026-11-30T00:00:00Z", status="active",
        updated_at=f"2026-11-30T00:00:{beat:02d}Z", repo=wire.repo_key("/r/origin"),
        max_parallel=2, heartbeat_s=1.0)
    return record.signed(identity)  # type: ignore[arg-type]


def judge(monkeypatch: object) -> tuple[FleetClient, Bucket, Clock]:
    clock = Clock()
    monkeypatch.setattr("chump_tui.fleet.remote.time.monotonic", clock)  # type: ignore[attr-defined]
    bucket = Bucket()
    client = FleetClient(bucket, "/r/origin", "console", keys=WorkerKeys(TrustList()))  # type: ignore[arg-type]
    return client, bucket, clock


def look(client: FleetClient, clock: Clock, seconds: float) -> None:
    """The console's looks, once a second, for ``seconds``."""
    for _ in range(int(seconds / LOOK_EVERY_S)):
        clock.now += LOOK_EVERY_S
        client.refresh_workers()


def test_hiccups_in_reading_the_records_do_not_restart_a_silent_workers_window(
        monkeypatch: object) -> None:
    """w1 (heartbeat 1 s: silent after 4 s) stops writing; every other look at the bucket
    fails. It is still judged silent in time, not given a fresh window at each hiccup."""
    client, bucket, clock = judge(monkeypatch)
    w1 = from_seed(new_seed())
    bucket.items["w1"] = presence(w1, 1)
    look(client, clock, 1)
    assert [w.worker_id for w in client.workers_up()] == ["w1"]
    for n in range(6):  # its record no longer changes; one look in two fails
        bucket.failing = n % 2 == 0
        look(client, clock, 1)
    bucket.failing = False
    look(client, clock, 1)
    assert client.silent_for("w1") is not None
    assert client.workers_up() == []


def test_time_the_console_could_not_read_is_nobodys_silence(monkeypatch: object) -> None:
    client, bucket, clock = judge(monkeypatch)
    w1 = from_seed(new_seed())
    bucket.items["w1"] = presence(w1, 1)
    look(client, clock, 1)
    bucket.failing = True
    look(client, clock, 30)  # blind for 30 s: as of its last look, w1 was fine
    assert client.silent_for("w1") is None and len(client.workers_up()) == 1
    bucket.failing = False
    look(client, clock, 1)  # sight back: w1 gets a heartbeat to be seen again
    assert client.silent_for("w1") is None
    bucket.items["w1"] = presence(w1, 2)
    look(client, clock, 1)
    assert client.silent_for("w1") is None
    look(client, clock, 6)  # and is judged from what the console reads from then on
    assert client.silent_for("w1") is not None


def test_a_waiting_fleet_dispatch_is_queued_and_a_gap_held_elsewhere_is_taken() -> None:
    """What the card, the summary line and plain mode's count say of the two new states."""
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.summary_export import totals_line
    from chump_tui.tui.widgets.dispatch_card import card_lines

    def row(key: str, **fields: object) -> Dispatch:
        return Dispatch(key=f"{key}#1", gap_id=key, title="t", priority="P1", effort="s",
                        branch=f"claude/{key.lower()}", worktree="/w", attempt=1,
                        started_at=1000.0, soft_deadline_s=1200.0, **fields)  # type: ignore[arg-type]

    queued = row("G-1", waiting="waiting for a host: 3 up for this repository, 6/6 slots busy")
    taken = row("G-2", phase="spawn_failed", error="taken by worker w2 (another console's "
                "request 1a2b3c4d)", taken_by="taken by worker w2 (another console's "
                "request 1a2b3c4d)")
    failed = row("G-3", phase="spawn_failed", error="creating worktree: failed")
    assert queued.label() == "QUEUED" and queued.active
    drawn = "\n".join(line.plain for line in card_lines(queued, 1010.0, []))
    assert "QUEUED" in drawn and "6/6 slots busy" in drawn
    assert taken.label() == "TAKEN" and not taken.failed_to_start and failed.failed_to_start
    assert totals_line([taken, failed]).endswith("spawn_failures=1  taken=1")
    assert totals_line([failed]).endswith("spawn_failures=1")  # the reference's line as it was


def test_a_listing_that_comes_back_empty_is_a_hiccup_not_every_worker_gone(
        monkeypatch: object) -> None:
    client, bucket, clock = judge(monkeypatch)
    w1 = from_seed(new_seed())
    bucket.items["w1"] = presence(w1, 1)
    look(client, clock, 1)
    items, bucket.items = bucket.items, {}  # a short key listing, look after look
    look(client, clock, 10)
    assert len(client.workers_up()) == 1 and client.silent_for("w1") is None
    bucket.items = items
    look(client, clock, 1)
    assert len(client.workers_up()) == 1


def test_a_report_of_a_started_agent_is_tried_again_until_the_broker_stores_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console waits for ``spawned``: a broker hiccup must not leave an agent running
    that nobody follows. Tried again (here quickly) until stored; False when it never is,
    and the worker then stops the agent and undoes the request."""
    from chump_tui.fleet import worker as worker_module
    from chump_tui.fleet.worker import Worker
    from tests.fleet_rig import origin_with_clones

    class FlakyBroker:
        def __init__(self, failures: int) -> None:
            self.failures = failures
            self.stored: list[bytes] = []

        def publish(self, subject: str, data: bytes) -> None:
            if self.failures:
                self.failures -= 1
                raise FleetError("nats://broker:4222: no answer within 5s", transient=True)
            self.stored.append(data)

    monkeypatch.setattr(worker_module, "REPORT_RETRY_S", (0.01, 0.01, 0.01, 0.01))
    clone = origin_with_clones(tmp_path, "w1")["w1"]
    console_key = from_seed(new_seed()).public_key
    lines: list[str] = []
    for failures, stored in ((3, True), (9, False)):
        broker = FlakyBroker(failures)
        worker = Worker(broker, clone, "w1", 1, ["claude"], {},  # type: ignore[arg-type]
                        from_seed(new_seed()), TrustList().add([console_key], "console"),
                        log=lines.append)
        assert worker._report_until_stored("spawned", "u1", pid=4242) is stored
        assert len(broker.stored) == (1 if stored else 0)
        if stored:
            report = wire.decode(broker.stored[0])
            assert isinstance(report, wire.AgentReport) and report.pid == 4242
    assert sum("reporting spawned for u1" in line for line in lines) == 3 + 5
