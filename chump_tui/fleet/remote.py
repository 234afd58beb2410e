"""The console's side of the fleet: the spawner seam implemented by hosts over NATS.

``RemoteSpawner`` puts a dispatch request on the repository's work queue and waits for
a worker to take it; the agent it spawned is a ``RemoteAgent``, which the engine drives
as it drives a local process (poll, wait, kill, busy). Its output arrives as ordered
byte chunks and is written to the attempt's log file here, so the same follower, parsers,
activity and watchdogs read it as they read a local agent's. ``FleetClient`` follows the
agents' stream, watches the workers' presence (a host silent past the timeout loses its
agents: LOST, their claims released) and sends upstream's DONE / STUCK events for the
console's outcomes. The engine and the front ends do not learn about NATS.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chump_tui.agent_process import FOLLOWERS, AgentProcess, LineCallback, OutputLog
from chump_tui.dispatch_record import LOST_PREFIX
from chump_tui.errors import ChumpError, DispatchError
from chump_tui.events import DispatchChanged, EngineEvent
from chump_tui.fleet import wire
from chump_tui.fleet.broker import Broker, FleetError
from chump_tui.fleet.identity import TrustList
from chump_tui.fleet.worker import claim_session
from chump_tui.fleet.worker_keys import WorkerKeys
from chump_tui.harness import DEFAULT_HARNESS, stream_format
from chump_tui.outside_text import one_line
from chump_tui.safe_fs import open_nofollow
from chump_tui.spawners import SpawnResult

if TYPE_CHECKING:
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.engine import Engine
    from chump_tui.watchdog import BusyProbe

ACCEPT_WAIT_S = 10.0  # a request nobody took by then is dropped by whoever gets it later
SPAWN_WAIT_S = 300.0  # fetch, worktree, claim script: a big repository takes a while
KILL_ANSWER_S = 5.0
REPLAY_WAIT_S = 15.0  # a resumed console: the replay brings a request's answers by then
DEFAULT_SILENT_S = 20.0
WAKE_EVERY_S = 0.02
UNCLAIMED_BYTES = 64 * 1024 * 1024  # reports for agents not attached (yet) here
MAX_OUTPUT_GAP = 64 * 1024 * 1024  # an offset further ahead than this is refused
HELD_BYTES = 16 * 1024 * 1024  # reports of a worker whose key is not known yet


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    accepted: threading.Event = field(default_factory=threading.Event)
    report: wire.AgentReport | None = None
    worker: str = ""  # who took it: only its answers count from then on


class RemoteAgent(AgentProcess):
    """An agent on a fleet host, as the engine sees a process."""

    def __init__(self, client: FleetClient, uid: str, worker: str, host: str, pid: int,
                 start_time: float | None, mirror: Path) -> None:
        super().__init__(None, pid, start_time, "")
        self.client = client
        self.uid = uid
        self.worker = worker
        self.host = host
        self.mirror = mirror
        self.received = 0  # bytes of its output written to the mirror
        self.ended = threading.Event()
        self.lost = ""  # "LOST (host h silent 20s)" once its host went silent
        self.stopped_on_return = False
        self._code: int | None = None
        self._reported_exit: int | None = None  # its host's exited report, even while lost
        self._mirror_fd: int | None = None
        self._write = threading.Lock()

    # -- fed by the client, on the broker's thread
    def feed(self, report: wire.AgentReport) -> None:
        if report.kind == "output" and report.offset is not None:
            self._append(report.offset, report.data)
        elif report.kind == "exited":
            code = report.code if report.code is not None else 0
            with self._write:
                self._reported_exit = code
                self._close_mirror()
                if not self.ended.is_set():
                    self._code = code
                    self.ended.set()

    def _append(self, offset: int, data: bytes) -> None:
        with self._write:
            prefix = b""
            if offset > self.received + MAX_OUTPUT_GAP:  # no stream loses that much: refused
                self.client.drop(f"output of {self.uid[:12]} at offset {offset}, "
                                 f"{offset - self.received} bytes past what arrived")
                return
            if offset > self.received:  # the stream lost some (its limits): say so
                prefix = (f"[chump-tui] {offset - self.received} bytes of output from "
                          f"{self.host} were not received\n").encode()
                self.received = offset
            data = data[self.received - offset:]  # a replay repeats what is here already
            if not data:
                return
            self.received += len(data)
            self._write_mirror(prefix + data)
        self.client.output_arrived()

    def _write_mirror(self, data: bytes) -> None:
        """Append to the mirror (caller holds _write). The file stays open while reports
        come: opening it for each one was a fifth of the receiving thread."""
        with contextlib.suppress(OSError):
            if self._mirror_fd is None:
                self._mirror_fd = open_nofollow(self.mirror,
                                                os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(self._mirror_fd, data)
        if self._reported_exit is not None:  # output after its end: nothing more will come
            self._close_mirror()

    def _close_mirror(self) -> None:
        """Caller holds _write; the next write opens it again."""
        if self._mirror_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._mirror_fd)
            self._mirror_fd = None

    def lose(self, why: str) -> None:
        """Its host went silent: the agent counts as ended (exit -1), saying why."""
        if self.ended.is_set():
            return
        with self._write:
            self._write_mirror(f"\n[chump-tui] {why}\n".encode())
            self._close_mirror()
        self._code = -1
        self.lost = why if why.startswith(LOST_PREFIX) else ""
        self.ended.set()

    def revive(self) -> None:
        """Its host came back and the console follows it again (as a new attempt): running
        unless its host already said it exited."""
        with self._write:
            self.lost = ""
            self.stopped_on_return = False
            self._code = self._reported_exit
            if self._reported_exit is None:
                self.ended.clear()

    # -- what the engine calls
    def poll(self) -> int | None:
        return self._code if self.ended.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self.ended.wait(timeout)
        return self.poll()

    def group_alive(self) -> bool:
        return not self.ended.is_set()

    def signal_group(self, sig: int) -> None:
        self.client.kill(self, 0.0)

    def terminate_group(self, grace_s: float, stop_agent_first: bool = False) -> int | None:
        # Its host stops the agent CLI first (it knows the harness), then its tools.
        if not self.client.kill(self, grace_s):
            return None
        self.wait(grace_s + KILL_ANSWER_S + 5.0)
        self.join_output(2.0)
        return self.poll()

    def kill_now(self) -> None:
        self.client.kill(self, 0.0)

    def strays(self) -> list[object]:
        return []  # its host looks for them

    def busy(self, probe: BusyProbe) -> bool:
        return self.client.busy(self.worker, self.uid)


class FleetClient:
    """One console's view of the fleet: its agents' stream, the workers, kills."""

    def __init__(self, broker: Broker, origin: str, session: str,
                 silent_after_s: float = DEFAULT_SILENT_S,
                 keys: WorkerKeys | None = None) -> None:
        self.broker = broker
        self.origin = origin
        self.key = wire.repo_key(origin)
        self.session = session
        self.silent_after_s = silent_after_s
        self.keys = keys or WorkerKeys(TrustList())
        self.dropped = 0  # malformed, foreign, unsigned or disbelieved messages seen
        self.last_drop = ""
        self._held: dict[str, list[tuple[bytes, str]]] = {}  # worker -> reports, its key unknown
        self._held_bytes = 0
        self._lock = threading.Lock()
        self._agents: dict[str, RemoteAgent] = {}
        self._pending: dict[str, _Pending] = {}
        self._unclaimed: collections.OrderedDict[str, list[wire.AgentReport]] = \
            collections.OrderedDict()
        self._unclaimed_bytes = 0
        self._workers: dict[str, tuple[wire.WorkerRecord, float]] = {}
        self._following = False
        self._blind = False  # the last look at the workers failed
        self._woken = 0.0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        # Set by the console: follow a lost agent whose host came back; False: stop it.
        self.on_return: Callable[[RemoteAgent], bool] | None = None

    # ------------------------------------------------------------ streams
    def follow(self, since: float | None) -> None:
        """Start reading agents' reports (from ``since``: a resumed session's start)."""
        with self._lock:
            if self._following:
                return
            self._following = True
        self.refresh_workers()  # the workers' keys first: their reports are checked with them
        self.broker.follow_stream(wire.agents_subject(self.key, "*"), wire.AGENTS_STREAM,
                                  self._on_reports, since)
        self._watcher = threading.Thread(target=self._watch_workers, name="fleet-workers",
                                         daemon=True)
        self._watcher.start()

    def drop(self, why: str) -> None:
        self.dropped += 1
        self.last_drop = one_line(why, 200)

    def _on_reports(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        """A message on the agents' stream (on the broker's loop): believed only when signed
        by the key of the worker its subject names."""
        worker = subject.rsplit(".", 1)[-1]
        signer = wire.signer_of(subject, data, headers)
        if signer is None:
            self.drop(f"an unsigned or wrongly signed report on {subject}")
            return
        with self._lock:
            known = self.keys.key_of(worker)
            if known is None or worker in self._held:  # its presence is not read yet
                if self._held_bytes + len(data) <= HELD_BYTES:
                    self._held.setdefault(worker, []).append((data, signer))
                    self._held_bytes += len(data)
                else:
                    self.drop(f"a report of {worker}, whose key is not known yet")
                return
        self._believed(worker, data, signer, known)

    def _believed(self, worker: str, data: bytes, signer: str, known: str) -> None:
        if signer != known:
            self.drop(f"a report on {worker}'s subject signed by {signer[:12]}…, "
                      "not its key")
            return
        try:
            reports = wire.decode_reports(data)
        except wire.WireError as exc:
            self.drop(str(exc))
            return
        for report in reports:
            if report.worker != worker:
                self.drop(f"{worker} reporting as {one_line(report.worker, 40)}")
                continue
            self._on_report(report)

    def _release_held(self, worker: str) -> None:
        """Its key is known now: its reports held until then, in order (on the loop)."""
        key = self.keys.key_of(worker)
        if key is None:
            return
        with self._lock:
            held = self._held.pop(worker, [])
            self._held_bytes -= sum(len(d) for d, _ in held)
        for data, signer in held:
            self._believed(worker, data, signer, key)

    def _on_report(self, report: wire.AgentReport) -> None:
        with self._lock:
            pending = self._pending.get(report.uid)
            agent = self._agents.get(report.uid)
            if agent is None and report.kind in ("output", "exited"):
                # Not attached yet (its spawned report is being handled, or a replay runs
                # ahead of the resume): kept for it, within a bound.
                self._unclaimed.setdefault(report.uid, []).append(report)
                self._unclaimed_bytes += len(report.data) + 100
                while self._unclaimed_bytes > UNCLAIMED_BYTES and self._unclaimed:
                    _uid, dropped = self._unclaimed.popitem(last=False)
                    self._unclaimed_bytes -= sum(len(r.data) + 100 for r in dropped)
                return
        if pending is not None and report.kind in ("accepted", "spawned", "rejected") \
                and self._answers(pending, report):
            if report.kind == "accepted":
                pending.worker = report.worker
                pending.accepted.set()
            else:
                pending.report = report
                pending.done.set()
        if agent is not None:
            if agent.lost and report.kind == "output" and not agent.stopped_on_return:
                # Its host is back with the agent alive: followed again if its gap was not
                # dispatched anew meanwhile, else stopped there (never two agents on a gap).
                agent.stopped_on_return = True
                threading.Thread(target=self._returned, args=(agent,), daemon=True,
                                 name=f"fleet-returned-{agent.uid[:8]}").start()
            agent.feed(report)

    def _answers(self, pending: _Pending, report: wire.AgentReport) -> bool:
        """Whether ``report`` answers our request: about the request we signed, and, once
        a worker took it, from that worker only (a second copy another worker refused, or
        a refusal someone provoked with a copy of our uid, does not count)."""
        if self.broker.identity is not None and \
                report.request_key != self.broker.identity.public_key:
            return False
        return not pending.worker or report.worker == pending.worker

    def _returned(self, agent: RemoteAgent) -> None:
        adopt = self.on_return
        if adopt is None or not adopt(agent):
            self.ask_to_kill(agent, 5.0)

    def output_arrived(self) -> None:
        """Have the log followers read the mirrors now, not at their next poll (at most
        every WAKE_EVERY_S: a round reads every file that grew)."""
        now = time.monotonic()
        if now - self._woken >= WAKE_EVERY_S:
            self._woken = now
            FOLLOWERS.wake()

    def _register(self, agent: RemoteAgent) -> None:
        with self._lock:
            self._agents[agent.uid] = agent
            early = self._unclaimed.pop(agent.uid, [])
            self._unclaimed_bytes -= sum(len(r.data) + 100 for r in early)
            for report in early:  # under the lock: newer reports wait behind these
                agent.feed(report)

    # ------------------------------------------------------------ dispatch
    def request(self, request: wire.DispatchRequest) -> wire.AgentReport:
        """Queue the request and wait for the worker that took it: its spawned or
        rejected report. DispatchError when nobody takes it in time."""
        pending = self.expect(request.uid)
        try:
            self.broker.publish(wire.dispatch_subject(self.key), wire.encode(request))
        except FleetError as exc:
            self.forget(request.uid)
            raise DispatchError(str(exc)) from None
        return self.answer(request.uid, pending, ACCEPT_WAIT_S)

    def expect(self, uid: str) -> _Pending:
        """Catch the answers to request ``uid`` from now on (a resumed session's request:
        before the replay of the stream starts)."""
        pending = _Pending()
        with self._lock:
            self._pending[uid] = pending
        return pending

    def forget(self, uid: str) -> None:
        with self._lock:
            self._pending.pop(uid, None)

    def answer(self, uid: str, pending: _Pending, accept_within_s: float) -> wire.AgentReport:
        """Wait for the spawned or rejected report of request ``uid``; DispatchError when no
        worker took it within ``accept_within_s`` or the one that did went silent."""
        try:
            if not pending.accepted.wait(accept_within_s) and not pending.done.is_set():
                up = self.workers_up()
                raise DispatchError(
                    f"no worker took it within {accept_within_s:g}s ("
                    + (f"{len(up)} up for this repository, "
                       f"{sum(w.running for w in up)}/{sum(w.max_parallel for w in up)} "
                       "slots busy" if up else "no worker is up for this repository")
                    + ")")
            self._wait_spawned(uid, pending)
        except FleetError as exc:
            raise DispatchError(str(exc)) from None
        finally:
            self.forget(uid)
        assert pending.report is not None
        return pending.report

    def _wait_spawned(self, uid: str, pending: _Pending) -> None:
        """Until the worker that took it says spawned or rejected; a DispatchError if it goes
        silent first (its claim is released: nobody else would) or takes too long."""
        deadline = time.monotonic() + SPAWN_WAIT_S
        while not pending.done.wait(1.0):
            worker = pending.worker
            silent = self.silent_for(worker) if worker else None
            if silent is not None:
                with contextlib.suppress(FleetError):
                    self.broker.release_by_session(claim_session(uid))
                raise DispatchError(f"worker {worker} took it and went silent ({silent:.0f}s) "
                                    "before starting it")
            if time.monotonic() > deadline:
                raise DispatchError(f"the worker took it but did not start it within "
                                    f"{SPAWN_WAIT_S:g}s")

    def silent_for(self, worker: str) -> float | None:
        """Seconds a worker has been silent past its timeout, else None."""
        with self._lock:
            entry = self._workers.get(worker)
        if entry is None:
            return None
        quiet = time.monotonic() - entry[1]
        return quiet if quiet > self.silent_after(entry[0]) else None

    def attach(self, uid: str, worker: str, host: str, pid: int, start_time: float | None,
               mirror: Path, received: int) -> RemoteAgent:
        agent = RemoteAgent(self, uid, worker, host, pid, start_time, mirror)
        agent.received = received
        self._register(agent)
        return agent

    def kill(self, agent: RemoteAgent, grace_s: float) -> bool:
        """Ask the agent's host to end it; False (said in its output) when it does not answer
        (or refuses, or someone else answers in its name)."""
        answer = self.ask_to_kill(agent, grace_s)
        if answer is None or answer.kind != "killing":
            why = (f"refused the kill ({answer.note})" if answer is not None else
                   f"did not answer the kill within {KILL_ANSWER_S:g}s")
            agent.lose(f"host {agent.host} {why}; it may still run there")
            return False
        return True

    def ask_to_kill(self, agent: RemoteAgent, grace_s: float) -> wire.AgentReport | None:
        """A signed kill request to the agent's host; its answer, when its key signed it."""
        body = wire.encode(wire.KillRequest(uid=agent.uid, grace_s=grace_s,
                                            expires_at=time.time() + KILL_ANSWER_S * 2))
        subject = wire.kill_subject(agent.worker)
        try:
            msg = self.broker.request(subject, body, KILL_ANSWER_S)
            answer = wire.decode(bytes(msg.data))
        except (FleetError, wire.WireError):
            return None
        signer = wire.signer_of(msg.subject, bytes(msg.data), msg.headers)
        if signer is None or signer != self.keys.key_of(agent.worker) \
                or not isinstance(answer, wire.AgentReport) or answer.uid != agent.uid:
            self.drop(f"an answer to a kill for {agent.worker} not signed by its key")
            return None
        return answer

    # ------------------------------------------------------------ workers
    def refresh_workers(self) -> None:
        try:
            items = self.broker.kv_items(self.broker.workers_bucket)
        except FleetError:
            self._blind = True
            return
        now = time.monotonic()
        with self._lock:
            if self._blind or not self.broker.nc.is_connected:
                # We could not see anyone (our own link or the broker was down): nobody is
                # judged silent for that time; each gets a fresh window from now.
                self._workers = {n: (rec, now) for n, (rec, _) in self._workers.items()}
                self._blind = not self.broker.nc.is_connected
            newly_known: list[str] = []
            for name, data in items.items():
                try:
                    record = wire.WorkerRecord.from_bytes(data)
                except wire.WireError:
                    continue
                if not record.verified or record.worker_id != name:
                    continue  # not a chump-tui worker's record (or not signed by its writer)
                had_key = self.keys.key_of(name) is not None
                if not self.keys.believe(name, record.key):
                    continue  # an impostor, or a key the trust file does not name
                if not had_key or name in self._held:
                    newly_known.append(name)
                old = self._workers.get(name)
                if old is None or old[0].updated_at != record.updated_at:
                    self._workers[name] = (record, now)
        for name in newly_known:  # its held reports, on the loop, before any newer ones
            self.broker.call_soon(functools.partial(self._release_held, name))

    def silent_after(self, record: wire.WorkerRecord) -> float:
        """How long a worker may be silent: four of its heartbeats (20 s at the default 5),
        or the client's default for a record that does not say."""
        return max(2.0, 4 * record.heartbeat_s) if record.heartbeat_s else self.silent_after_s

    def workers_up(self) -> list[wire.WorkerRecord]:
        """Active workers for this repository that spoke within their timeout."""
        now = time.monotonic()
        with self._lock:
            return [rec for rec, seen in self._workers.values()
                    if rec.repo == self.key and rec.status == "active"
                    and now - seen <= self.silent_after(rec)]

    def busy(self, worker: str, uid: str) -> bool:
        with self._lock:
            entry = self._workers.get(worker)
        return entry is not None and uid in entry[0].busy

    def _watch_workers(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(ChumpError):  # a trust file made unreadable: keep the old
                self.keys.reload()
            self.refresh_workers()
            if self._blind:
                continue  # silence we could not have heard is nobody's fault
            with self._lock:
                agents = [a for a in self._agents.values() if not a.ended.is_set()]
            for agent in agents:
                silent = self.silent_for(agent.worker)
                if silent is not None:
                    agent.lose(f"LOST (host {agent.host} silent {silent:.0f}s)")
                    # Its claim would outlive it by hours: free the gap for another host.
                    with contextlib.suppress(FleetError):
                        self.broker.release_by_session(claim_session(agent.uid))

    def close(self) -> None:
        self._stop.set()
        self.broker.close()

    # ------------------------------------------------------------ upstream events
    def on_engine_event(self, event: EngineEvent) -> None:
        """The console's outcomes as upstream's DONE / STUCK events (never blocking)."""
        if not isinstance(event, DispatchChanged) or event.why != "outcome":
            return
        rec = event.dispatch
        if rec.outcome is None:
            return
        if rec.outcome.kind == "shipped":
            body = wire.coord_event("DONE", self.session, gap=rec.gap_id,
                                    reason=f"PR #{rec.outcome.pr_number} merged")
            subject = wire.event_subject("DONE")
        else:
            body = wire.coord_event("STUCK", self.session, gap=rec.gap_id,
                                    reason=one_line(rec.reason(), 300))
            subject = wire.event_subject("STUCK")
        self.broker.publish_event(subject, body)


class RemoteSpawner:
    """The Spawner seam over the fleet: the worker makes the worktree, claims, spawns."""

    def __init__(self, client: FleetClient, base_ref: str, harness: str = DEFAULT_HARNESS,
                 gap_harness: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.base_ref = base_ref
        self.harness = harness
        self.gap_harness = dict(gap_harness or {})
        self.own_requests: set[str] = set()  # the requests this console sent (or resumed)
        self.backend = "claude"
        self.backend_warning: str | None = None
        # Set by the console: save "/<request uid>" in the row of log_path before the
        # request goes out, so a console killed while it waits can find the answer.
        self.on_request: Callable[[Path, str], None] | None = None

    def held_elsewhere(self, gap_ids: set[str]) -> dict[str, str]:
        """Gaps of the backlog claimed in chump_gaps by someone else: who holds each (a
        claim of a request this console sent is its own: a resumed row, not a conflict)."""
        broker = self.client.broker
        try:
            claims = broker.claims()
        except FleetError:
            return {}
        held = {}
        for gid, claim in claims.items():
            uid = claim.session_id.removeprefix("chump-tui:")
            if gid not in gap_ids or uid in self.own_requests:
                continue
            since = f" since {claim.claimed_at}" if claim.claimed_at else ""
            held[gid] = f"claimed in {broker.gap_bucket} by {self._holder(claim, uid)}{since}"
        return held

    def _holder(self, claim: wire.Claim, uid: str) -> str:
        """``worker w2 (another console's request 1a2b3c4d)`` when a chump-tui worker holds
        it; upstream's session id otherwise."""
        if uid == claim.session_id:
            return claim.session_id
        with contextlib.suppress(FleetError):
            worker = self.client.broker.kv_get(wire.REQUESTS_BUCKET, uid)
            if worker:
                name = one_line(worker.decode("utf-8", "replace"), 60)
                return f"worker {name} (another console's request {uid[:8]})"
        return f"chump-tui request {uid[:8]}"

    def trouble(self) -> str | None:
        """The broker's state when the link is down, for the status line."""
        return self.client.broker.trouble()

    def hosts(self) -> list[tuple[str, int, int]]:
        """The hosts up for this repository (from the last presence records: no I/O)."""
        return sorted((w.worker_id, max(0, w.max_parallel - w.running), w.max_parallel)
                      for w in self.client.workers_up())

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        self.base_ref = base_ref  # made on the host that takes the request

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        try:
            held = self.client.broker.claim_of(gap_id)
        except FleetError as exc:
            raise DispatchError(str(exc)) from None
        if held is not None:
            holder = self._holder(held, held.session_id.removeprefix("chump-tui:"))
            raise DispatchError(f"claimed in {self.client.broker.gap_bucket} by "
                                f"{holder} since {held.claimed_at}")
        return None  # the host claims it, atomically, when it takes the request

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        harness = self.gap_harness.get(gap_id, self.harness)
        uid = uuid.uuid4().hex
        request = wire.DispatchRequest(
            uid=uid, key=log_path.stem, gap_id=gap_id, origin=self.client.origin,
            base_ref=self.base_ref, harness=harness, console=self.client.session,
            expires_at=time.time() + ACCEPT_WAIT_S)
        self.own_requests.add(uid)
        if self.on_request is not None:  # the row knows its request before it goes out
            self.on_request(log_path, f"/{uid}")
        self.client.follow(None)
        return self._started(uid, self.client.request(request), log_path, output, on_line)

    def resume_dispatch(self, record: Dispatch) -> Callable[[OutputLog, LineCallback],
                                                            SpawnResult]:
        """A row the console was dispatching when it stopped: its request's answers are
        caught from now on (the replay brings those given meanwhile); the returned call
        waits for them and follows the agent, or raises DispatchError."""
        uid = record.remote.partition("/")[2]
        self.own_requests.add(uid)
        pending = self.client.expect(uid)
        log_path = Path(record.log_path)
        # Taken by then or never (a worker refuses an expired request); the replay of what
        # was said meanwhile needs a moment whatever the clock says.
        accept_by = record.started_at + ACCEPT_WAIT_S - time.time()

        def wait(output: OutputLog, on_line: LineCallback) -> SpawnResult:
            report = self.client.answer(uid, pending, max(accept_by, REPLAY_WAIT_S))
            return self._started(uid, report, log_path, output, on_line)

        return wait

    def _started(self, uid: str, report: wire.AgentReport, log_path: Path, output: OutputLog,
                 on_line: LineCallback | None) -> SpawnResult:
        if report.kind == "rejected":
            raise DispatchError(f"{report.host} ({report.worker}): {report.note}")
        if report.pid is None:
            raise DispatchError(f"{report.host} ({report.worker}): spawned without a pid")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)
        agent = self.client.attach(uid, report.worker, report.host, report.pid,
                                   report.start_time, log_path, 0)
        agent.follow(log_path, output, on_line, 0, stream_format(report.harness))
        return SpawnResult(agent, report.backend or "claude", report.harness,
                           host=report.host, remote=f"{report.worker}/{uid}")

    def adopt_returned(self, engine: Engine, agent: RemoteAgent) -> bool:
        """A lost agent's host came back: the engine follows it as its gap's next attempt
        (False when the gap was dispatched again meanwhile, or its row is not found)."""
        lost = next((d for d in engine.snapshot()
                     if d.lost and d.remote.partition("/")[2] == agent.uid), None)
        if lost is None:
            return False

        def attach(output: OutputLog, on_line: LineCallback) -> SpawnResult:
            agent.revive()
            agent.follow(agent.mirror, output, on_line, 0, stream_format(lost.harness))
            return SpawnResult(agent, lost.backend, lost.harness, host=lost.host,
                               remote=lost.remote)

        return engine.adopt(lost.key, attach) is not None

    def reattach(self, record: Dispatch) -> RemoteAgent | None:
        """A resumed session's fleet agent: its output is replayed from the stream."""
        worker, _, uid = record.remote.partition("/")
        self.own_requests.add(uid)
        if not worker or not uid or record.pid is None:
            return None
        mirror = Path(record.log_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(mirror)  # rebuilt whole from the stream's replay
        return self.client.attach(uid, worker, record.host, record.pid, record.process_start,
                                  mirror, 0)


def replay_from(records: Iterable[Dispatch]) -> float | None:
    """Where a resumed session's replay starts: its oldest active fleet agent."""
    starts = [r.started_at for r in records if r.remote and r.active]
    return min(starts) - 60.0 if starts else None
