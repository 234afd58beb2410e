"""The Spawner seam over the fleet: a dispatch is a request a worker takes, retried until
it runs, another session turns out to hold the gap, or the operator's deadline passes.

A dispatch waits (QUEUED: waiting for a host) until the console can see a free slot on a
healthy worker, then sends a request that expires in ``ACCEPT_WAIT_S``. What is not the
gap's fault is tried again with back-off: the broker failing or electing a leader, no
worker taking the request in time (it is then fenced: marked taken in this console's
name, so no worker can start it late), a host that could not start it (at most
``HOST_REFUSALS`` of those), a worker that took it and went silent. A gap held by another
session is ``TakenElsewhere``, not a failure. Past ``--dispatch-deadline`` the dispatch
fails, saying what it waited for.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from chump_tui.agent_process import LineCallback, OutputLog
from chump_tui.errors import DispatchDeferred, DispatchError, TakenElsewhere
from chump_tui.fleet import wire
from chump_tui.fleet.broker import ClaimHeld, FleetError
from chump_tui.fleet.remote import (
    ACCEPT_WAIT_S,
    REPLAY_WAIT_S,
    FleetClient,
    Pending,
    RemoteAgent,
)
from chump_tui.fleet.worker import claim_session
from chump_tui.harness import DEFAULT_HARNESS, stream_format
from chump_tui.outside_text import one_line
from chump_tui.spawners import SpawnResult

if TYPE_CHECKING:
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.engine import Engine

HOST_REFUSALS = 3  # hosts that could not start one dispatch before it fails
BACKOFF_S = (1.0, 2.0, 4.0, 8.0)  # then every MAX_BACKOFF_S
MAX_BACKOFF_S = 10.0
SLOT_LOOK_S = 0.5


class RemoteSpawner:
    """The Spawner seam over the fleet: the worker makes the worktree, claims, spawns."""

    def __init__(self, client: FleetClient, base_ref: str, harness: str = DEFAULT_HARNESS,
                 gap_harness: Mapping[str, str] | None = None,
                 dispatch_deadline_s: float = 0.0, output_mode: str = "summary") -> None:
        self.client = client
        self.base_ref = base_ref
        self.harness = harness
        self.gap_harness = dict(gap_harness or {})
        self.dispatch_deadline_s = dispatch_deadline_s  # 0: wait as long as it takes
        self.output_mode = output_mode  # full: every byte; summary: what the console shows
        self.own_requests: set[str] = set()  # the requests this console sent (or resumed)
        self.backend = "claude"
        self.backend_warning: str | None = None
        # Each dispatch on a thread of its own (the engine's launcher): one waiting for a
        # host must not hold up the others.
        self.dispatches_in_parallel = True
        self.cancelled = threading.Event()  # the console is stopping: no new request
        # Set by the console: save "/<request uid>" in the row of log_path before the
        # request goes out, so a console killed while it waits can find the answer.
        self.on_request: Callable[[Path, str], None] | None = None
        # Set by the console: what the row of log_path waits for ("" : nothing now).
        self.on_waiting: Callable[[Path, str], None] | None = None

    def cancel(self) -> None:
        """The console stops: dispatches waiting for a host give up; a request a worker
        already took is still followed to its answer (the agent is then stopped)."""
        self.cancelled.set()

    # ------------------------------------------------------------ claims
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

    def _check_claim(self, gap_id: str) -> None:
        """TakenElsewhere when another session holds the gap; DispatchDeferred while an
        earlier request of this console still does (its agent is being ended) or the broker
        cannot say."""
        try:
            held = self.client.broker.claim_of(gap_id)
        except FleetError as exc:
            raise DispatchDeferred(f"the broker: {exc}") from None
        if held is None:
            return
        uid = held.session_id.removeprefix("chump-tui:")
        if uid in self.own_requests:
            if self.client.agent_over(uid):
                # Its agent ended here (lost, killed) and its release did not get through
                # (the broker was away then): ours to free, as it would have been.
                with contextlib.suppress(FleetError):
                    self.client.broker.release(gap_id, held.session_id)
            raise DispatchDeferred("an earlier request of this console still holds its claim")
        raise TakenElsewhere(f"taken by {self._holder(held, uid)} (claimed in "
                             f"{self.client.broker.gap_bucket} since {held.claimed_at})")

    def shipped_elsewhere(self) -> dict[str, str]:
        """Gaps another console trusted here shipped (its DONE events): never dispatched."""
        return self.client.shipped_elsewhere()

    def trouble(self) -> str | None:
        """The broker's state when the link is down, else the hosts that take no work, for
        the status line."""
        broker = self.client.broker.trouble()
        if broker is not None:
            return broker
        sick = self.client.degraded()
        if not sick:
            return None
        return "degraded: " + ", ".join(f"{name} ({why})" for name, why in sick)

    def hosts(self) -> list[tuple[str, int, int]]:
        """The hosts up for this repository (from the last presence records: no I/O)."""
        return sorted((w.worker_id, 0 if w.degraded else max(0, w.max_parallel - w.running),
                       w.max_parallel) for w in self.client.workers_up())

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        self.base_ref = base_ref  # made on the host that takes the request

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        return None  # the host claims it, atomically, when it takes the request

    # ------------------------------------------------------------ dispatch
    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        self.client.follow(None)
        report = self._dispatch(gap_id, log_path, self._deadline())
        return self._started(report, log_path, output, on_line)

    def _deadline(self) -> float | None:
        return time.monotonic() + self.dispatch_deadline_s if self.dispatch_deadline_s \
            else None

    def _dispatch(self, gap_id: str, log_path: Path, deadline: float | None) -> wire.AgentReport:
        """Requests until one runs (its spawned report); TakenElsewhere or DispatchError."""
        harness = self.gap_harness.get(gap_id, self.harness)
        refused_by_hosts = 0
        tries = 0
        try:
            while True:
                uid = uuid.uuid4().hex
                try:
                    pending = self._wait_for_a_slot(uid, log_path, deadline)
                    try:
                        shipped = self.client.shipped_elsewhere().get(gap_id)
                        if shipped is not None:
                            raise TakenElsewhere(shipped)
                        self._check_claim(gap_id)
                    except BaseException:
                        self.client.forget(uid)  # the slot it held is free again
                        raise
                    report = self._send(uid, pending, gap_id, harness, log_path)
                except DispatchDeferred as exc:
                    why = str(exc)
                else:
                    if report.kind == "spawned":
                        return report
                    why = f"{report.host} ({report.worker}): {report.note}"
                    if report.refusal == "claimed":
                        try:  # whose: taken elsewhere (raised), or ours ending (wait)
                            self._check_claim(gap_id)
                        except DispatchDeferred as exc:
                            why = str(exc)
                    elif report.refusal == "host":
                        refused_by_hosts += 1
                        if refused_by_hosts >= HOST_REFUSALS:
                            raise DispatchError(f"{refused_by_hosts} hosts could not start it "
                                                f"(last: {why})")
                    elif report.refusal != "retry":
                        raise DispatchError(why)
                tries += 1
                self._back_off(log_path, why, tries, deadline)
        finally:
            self._waiting(log_path, "")

    def _wait_for_a_slot(self, uid: str, log_path: Path, deadline: float | None) -> Pending:
        """A free slot, held for request ``uid`` (dispatches waiting together never all see
        the same slot free and all go out)."""
        while (pending := self.client.take_slot(uid)) is None:
            why = f"waiting for a host: {self.client.fleet_line()}"
            self._waiting(log_path, why)
            self._pause(SLOT_LOOK_S, why, deadline)
        self._waiting(log_path, "")
        return pending

    def _back_off(self, log_path: Path, why: str, tries: int, deadline: float | None) -> None:
        wait = BACKOFF_S[tries - 1] if tries <= len(BACKOFF_S) else MAX_BACKOFF_S
        self._waiting(log_path, f"retrying in {wait:g}s: {one_line(why, 200)}")
        self._pause(wait, why, deadline)

    def _pause(self, seconds: float, why: str, deadline: float | None) -> None:
        if self.cancelled.wait(seconds):
            raise DispatchError(f"the console stopped while it waited ({one_line(why, 200)})")
        if deadline is not None and time.monotonic() > deadline:
            raise DispatchError(f"not dispatched within --dispatch-deadline "
                                f"{self.dispatch_deadline_s:g}s ({one_line(why, 200)})")

    def _waiting(self, log_path: Path, why: str) -> None:
        if self.on_waiting is not None:
            self.on_waiting(log_path, why)

    def _send(self, uid: str, pending: Pending, gap_id: str, harness: str,
              log_path: Path) -> wire.AgentReport:
        request = wire.DispatchRequest(
            uid=uid, key=log_path.stem, gap_id=gap_id, origin=self.client.origin,
            base_ref=self.base_ref, harness=harness, console=self.client.session,
            expires_at=time.time() + ACCEPT_WAIT_S, output=self.output_mode)
        self.own_requests.add(uid)
        if self.on_request is not None:  # the row knows its request before it goes out
            self.on_request(log_path, f"/{uid}")
        return self.client.request(request, pending, self.cancelled)

    def resume_dispatch(self, record: Dispatch) -> Callable[[OutputLog, LineCallback],
                                                            SpawnResult]:
        """A row the console was dispatching when it stopped: its request's answers are
        caught from now on (the replay brings those given meanwhile); the returned call
        waits for them and follows the agent. A request nobody took is sent again as a new
        dispatch would be; DispatchError when that fails."""
        uid = record.remote.partition("/")[2]  # none: it was waiting for a host
        if uid:
            self.own_requests.add(uid)
        pending = self.client.expect(uid) if uid else None
        log_path = Path(record.log_path)
        # Taken by then or never (a worker refuses an expired request); the replay of what
        # was said meanwhile needs a moment whatever the clock says.
        accept_by = record.started_at + ACCEPT_WAIT_S - time.time()

        def wait(output: OutputLog, on_line: LineCallback) -> SpawnResult:
            deadline = self._deadline()
            try:
                if pending is None:
                    raise DispatchDeferred("no request went out yet")
                report = self.client.answer(uid, pending, max(accept_by, REPLAY_WAIT_S),
                                            self.cancelled)
                if report.kind != "spawned":
                    raise DispatchDeferred(report.note)
            except DispatchDeferred:
                report = self._dispatch(record.gap_id, log_path, deadline)
            return self._started(report, log_path, output, on_line)

        return wait

    def _started(self, report: wire.AgentReport, log_path: Path, output: OutputLog,
                 on_line: LineCallback | None) -> SpawnResult:
        if report.pid is None:
            raise DispatchError(f"{report.host} ({report.worker}): spawned without a pid")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)
        agent = self.client.attach(report.uid, report.worker, report.host, report.pid,
                                   report.start_time, log_path, 0)
        agent.follow(log_path, output, on_line, 0, stream_format(report.harness))
        return SpawnResult(agent, report.backend or "claude", report.harness,
                           host=report.host, remote=f"{report.worker}/{report.uid}")

    # ------------------------------------------------------------ agents seen again
    def adopt_returned(self, engine: Engine, agent: RemoteAgent) -> bool:
        """A lost agent's host came back: the engine follows it as its gap's next attempt
        (False when the gap was dispatched again meanwhile, or its row is not found)."""
        lost = next((d for d in engine.snapshot()
                     if d.lost and d.remote.partition("/")[2] == agent.uid), None)
        if lost is None:
            return False
        # Its host keeps it paused until its claim is this agent's again: taken back here
        # first, so no other console can start the gap meanwhile.
        broker = self.client.broker
        session = claim_session(agent.uid)
        try:
            broker.claim(lost.gap_id, wire.Claim(session, wire.rfc3339()))
        except ClaimHeld as held:
            if held.claim is None or held.claim.session_id != session:
                return False
        except FleetError:
            return False

        def attach(output: OutputLog, on_line: LineCallback) -> SpawnResult:
            agent.revive()
            agent.follow(agent.mirror, output, on_line, 0, stream_format(lost.harness))
            return SpawnResult(agent, lost.backend, lost.harness, host=lost.host,
                               remote=lost.remote)

        if engine.adopt(lost.key, attach) is not None:
            return True
        with contextlib.suppress(FleetError):
            broker.release(lost.gap_id, session)
        return False

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
