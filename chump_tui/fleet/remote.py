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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chump_tui.agent_process import FOLLOWERS, AgentProcess, LineCallback, OutputLog
from chump_tui.dispatch_record import LOST_PREFIX
from chump_tui.errors import ChumpError, DispatchDeferred, DispatchError
from chump_tui.events import DispatchChanged, EngineEvent
from chump_tui.fleet import wire
from chump_tui.fleet.broker import Broker, FleetError
from chump_tui.fleet.identity import TrustList
from chump_tui.fleet.summaries import activity_from
from chump_tui.fleet.worker import claim_session
from chump_tui.fleet.worker_keys import WorkerKeys
from chump_tui.outside_text import one_line
from chump_tui.safe_fs import open_nofollow

if TYPE_CHECKING:
    from chump_tui.agent_streams.decoder import StreamFormat
    from chump_tui.watchdog import BusyProbe

ACCEPT_WAIT_S = 10.0  # a request nobody took by then is dropped by whoever gets it later
SPAWN_WAIT_S = 300.0  # fetch, worktree, claim script: a big repository takes a while
KILL_ANSWER_S = 5.0
DONE_LOOKBACK_S = 24 * 3600.0  # other consoles' DONE events read at start (upstream keeps 24 h)
GIVEN_UP = b"given up by"  # a fenced request's taker in the requests bucket
UNWATCHED_KILL_S = 3600.0  # an agent nobody follows is asked to stop for this long
WATCH_LEASE_S = 60.0  # a watch its console stopped renewing ends by itself
REPLAY_WAIT_S = 15.0  # a resumed console: the replay brings a request's answers by then
DEFAULT_SILENT_S = 20.0
LOOK_EVERY_S = 1.0  # the workers' records are read this often
WAKE_EVERY_S = 0.02
UNCLAIMED_BYTES = 64 * 1024 * 1024  # reports for agents not attached (yet) here
MAX_OUTPUT_GAP = 64 * 1024 * 1024  # an offset further ahead than this is refused
HELD_BYTES = 16 * 1024 * 1024  # reports of a worker whose key is not known yet


@dataclass
class Pending:
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
        # Its row's output and line sink (summaries feed them), once the engine follows it.
        self.output: OutputLog | None = None
        self.on_line: LineCallback | None = None
        self._early: list[wire.AgentReport] = []  # summaries before that
        self.watching = False  # the operator looks at it: its whole output comes
        self._follow_with: tuple[Path, OutputLog, int, StreamFormat | None] | None = None
        self._following = False
        self.watch_renew_at = 0.0

    def follow(self, log_path: Path, output: OutputLog, on_line: LineCallback | None,
               offset: int = 0, fmt: StreamFormat | None = None) -> None:
        """The mirror is followed as a local agent's log is, from when anything is written
        into it (a thousand summarised agents nobody watches have none, and a follower
        polls its file each round); summaries, when its host sends them, go to the same
        output and line sink."""
        with self._write:
            self.output, self.on_line = output, on_line
            early, self._early = self._early, []
            self._follow_with = (log_path, output, offset, fmt)
            if self.received or os.path.exists(log_path):
                self._start_following()
        for report in early:
            self._summary(report)

    def _start_following(self) -> None:
        """Caller holds _write; once."""
        if self._follow_with is None or self._following:
            return
        self._following = True
        log_path, output, offset, fmt = self._follow_with
        super().follow(log_path, output, self.on_line, offset, fmt)

    # -- fed by the client, on the broker's thread
    def feed(self, report: wire.AgentReport) -> None:
        if report.kind == "summary":
            self._summary(report)
        elif report.kind == "output" and report.offset is not None:
            self._append(report.offset, report.data)
        elif report.kind == "exited":
            code = report.code if report.code is not None else 0
            with self._write:
                self._reported_exit = code
                self._close_mirror()
                if not self.ended.is_set():
                    self._code = code
                    self.ended.set()

    def _summary(self, report: wire.AgentReport) -> None:
        """What its host says the agent is doing, and its new lines (shown unless its whole
        output comes meanwhile: the mirror's follower shows those)."""
        with self._write:
            output, on_line = self.output, self.on_line
            if output is None:
                if len(self._early) < 64:
                    self._early.append(report)
                return
        lines = [] if self.watching else list(report.lines)
        output.apply_summary(activity_from(report.activity or {}, time.time()), lines,
                             list(report.signals))
        if lines and on_line is not None:
            on_line(lines)

    def watch(self, on: bool) -> None:
        """The operator looks at this agent (or no longer): its host sends its whole output
        meanwhile (asked now and renewed while on, on a thread: never the caller's)."""
        if on == self.watching:
            return
        self.watching = on
        if on and self.output is not None:
            self.output.clear_tail(f"[chump-tui] the output of {self.host}'s agent, from its "
                                   "last lines on (the whole log is on that host)")
        self.watch_renew_at = 0.0 if on else float("inf")
        threading.Thread(target=self.client.ask_to_watch, args=(self, on), daemon=True,
                         name=f"fleet-watch-{self.uid[:8]}").start()

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
            self._start_following()
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
        self._pending: dict[str, Pending] = {}
        self._unclaimed: collections.OrderedDict[str, list[wire.AgentReport]] = \
            collections.OrderedDict()
        self._unclaimed_bytes = 0
        # Each worker's record and when it last changed, as far as the console could see:
        # time it could not read the bucket is taken out (see refresh_workers).
        self._workers: dict[str, tuple[wire.WorkerRecord, float]] = {}
        self._following = False
        self._blind = False  # the last look at the workers failed
        self._looked_at = time.monotonic()  # the last look that succeeded
        self.abandoned: set[str] = set()  # requests given up on: an agent they start is ended
        self._exits_seen: set[str] = set()  # agents (uids) whose host said they exited
        self._shipped_elsewhere: dict[str, str] = {}  # gap -> which console's DONE said so
        self._releases: list[threading.Thread] = []  # claims being released (see close)
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
        self.broker.follow_stream(wire.event_subject("DONE"), wire.EVENTS_STREAM, self._on_done,
                                  time.time() - DONE_LOOKBACK_S)
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

    def _exited(self, report: wire.AgentReport) -> None:
        """An agent that failed frees its gap: its claim is released here too (only if still
        its own), as a host that reported the exit and died, or lost its link before
        releasing, would leave it for hours. One that exited 0 keeps it until this console
        records its outcome (its PR is on the way: no other console may start the gap)."""
        with self._lock:
            if report.uid in self._exits_seen:
                return
            self._exits_seen.add(report.uid)
            ours = report.uid in self._agents or report.uid in self.abandoned
        if ours and report.code != 0:
            self.release_claims([("", report.uid)])

    def release_claims(self, claims: list[tuple[str, str]],
                       first: Callable[[], None] | None = None) -> None:
        """Release the claims these (gap id, request uid) agents hold, each only if it still
        does, one after another on a thread, after ``first`` (``close`` waits for it a
        moment). A gap id not known ("") is looked for among all the claims."""
        if not claims:
            return

        def go() -> None:
            if first is not None:
                first()
            for gap_id, uid in claims:
                with contextlib.suppress(FleetError):
                    if gap_id:
                        self.broker.release(gap_id, claim_session(uid))
                    else:
                        self.broker.release_by_session(claim_session(uid))

        thread = threading.Thread(target=go, daemon=True, name="fleet-release")
        with self._lock:
            self._releases = [t for t in self._releases if t.is_alive()] + [thread]
        thread.start()

    def _on_done(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        """Another console shipped a gap (its DONE event, signed by a console key this one
        trusts): the gap is not dispatched here. Upstream's unsigned events and our own are
        not taken as that."""
        signer = wire.signer_of(subject, data, headers)
        own = self.broker.identity.public_key if self.broker.identity is not None else None
        if signer is None or signer == own or not self.keys.trust.trusts(signer, "console"):
            return
        done = wire.done_gap(data)
        if done is not None:
            gap, session = done
            with self._lock:
                self._shipped_elsewhere[gap] = \
                    f"shipped by another console ({one_line(session, 80) or signer[:12]})"

    def agent_over(self, uid: str) -> bool:
        """Request ``uid``'s agent ended as far as this console knows (or never started:
        its request was given up on)."""
        with self._lock:
            agent = self._agents.get(uid)
        return agent.ended.is_set() if agent is not None else uid in self.abandoned

    def shipped_elsewhere(self) -> dict[str, str]:
        with self._lock:
            return dict(self._shipped_elsewhere)

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
        if report.kind == "exited":
            self._exited(report)
        elif report.kind == "spawned" and report.uid in self.abandoned \
                and report.uid not in self._pending:
            # A request this console gave up on was started after all: nobody would follow
            # that agent, so it is ended (its gap was, or will be, dispatched again).
            threading.Thread(target=self.end_unwatched, args=(report.uid, report.worker),
                             name=f"fleet-abandoned-{report.uid[:8]}", daemon=True).start()
        with self._lock:
            pending = self._pending.get(report.uid)
            agent = self._agents.get(report.uid)
            if agent is None and report.kind in ("output", "exited", "summary"):
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
            if agent.lost and report.kind in ("output", "summary") \
                    and not agent.stopped_on_return:
                # Its host is back with the agent alive: followed again if its gap was not
                # dispatched anew meanwhile, else stopped there (never two agents on a gap).
                agent.stopped_on_return = True
                threading.Thread(target=self._returned, args=(agent,), daemon=True,
                                 name=f"fleet-returned-{agent.uid[:8]}").start()
            agent.feed(report)

    def _answers(self, pending: Pending, report: wire.AgentReport) -> bool:
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
            self.end_unwatched(agent.uid, agent.worker)

    def end_unwatched(self, uid: str, worker: str) -> None:
        """An agent of ours nobody follows (its gap runs elsewhere now, or its request was
        given up on) is ended: asked again until its host says it is stopping it or it
        exits, however long its link stays flaky (blocking; on a thread of its own)."""
        deadline = time.monotonic() + UNWATCHED_KILL_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            if uid in self._exits_seen:
                return
            answer = self.ask_to_kill(uid, worker, 5.0)
            if answer is not None and (answer.kind == "killing"
                                       or answer.note == wire.NO_SUCH_AGENT):
                return
            self._stop.wait(KILL_ANSWER_S)

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
    def request(self, request: wire.DispatchRequest, pending: Pending,
                cancelled: threading.Event | None = None) -> wire.AgentReport:
        """Queue the request and wait for the worker that took it: its spawned or
        rejected report. DispatchDeferred when nobody took it in time (it can no longer be
        taken) or the broker failed; DispatchError when the worker that took it fails.
        ``pending``: its answers' catch, as ``take_slot`` made it with the slot."""
        try:
            self.broker.publish(wire.dispatch_subject(self.key), wire.encode(request))
        except FleetError as exc:
            self.forget(request.uid)
            raise DispatchDeferred(f"the broker: {exc}") from None
        return self.answer(request.uid, pending, ACCEPT_WAIT_S, cancelled)

    def expect(self, uid: str) -> Pending:
        """Catch the answers to request ``uid`` from now on (a resumed session's request:
        before the replay of the stream starts)."""
        pending = Pending()
        with self._lock:
            self._pending[uid] = pending
        return pending

    def forget(self, uid: str) -> None:
        with self._lock:
            self._pending.pop(uid, None)

    def answer(self, uid: str, pending: Pending, accept_within_s: float,
               cancelled: threading.Event | None = None) -> wire.AgentReport:
        """Wait for the spawned or rejected report of request ``uid``.

        Not taken within ``accept_within_s`` (or the console stops): the request is marked
        taken in this console's name, so no worker can start it any more, and
        DispatchDeferred says why; if a worker took it first, its answer is waited for.
        """
        try:
            if not self._accepted(pending, accept_within_s, cancelled):
                self._give_up(uid, pending)
            self._wait_spawned(uid, pending)
        except FleetError as exc:
            raise DispatchDeferred(f"the broker: {exc}") from None
        finally:
            self.forget(uid)
        assert pending.report is not None
        return pending.report

    @staticmethod
    def _accepted(pending: Pending, within_s: float, cancelled: threading.Event | None) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if pending.accepted.wait(0.1) or pending.done.is_set():
                return True
            if cancelled is not None and cancelled.is_set():
                return False
        return pending.accepted.is_set() or pending.done.is_set()

    def _give_up(self, uid: str, pending: Pending) -> None:
        """Nobody took request ``uid``: fence it (returns when a worker had taken it after
        all: its answer is on its way) or raise DispatchDeferred."""
        why = f"no worker took it within {ACCEPT_WAIT_S:g}s ({self.fleet_line()})"
        try:
            fenced = self.broker.take_request(uid, f"{GIVEN_UP.decode()} {self.session}")
        except FleetError:
            # Unsure: an agent it starts after all is ended when its report comes.
            self.abandoned.add(uid)
            raise DispatchDeferred(why) from None
        if fenced:
            raise DispatchDeferred(why)
        with contextlib.suppress(FleetError):  # fenced before (a resumed console's request)
            taker = self.broker.kv_get(wire.REQUESTS_BUCKET, uid) or b""
            if taker.startswith(GIVEN_UP):
                raise DispatchDeferred(why)
        if not pending.accepted.wait(ACCEPT_WAIT_S) and not pending.done.is_set():
            self.abandoned.add(uid)  # taken, yet its worker says nothing: ended if it starts
            raise DispatchDeferred(f"a worker took it and said nothing ({self.fleet_line()})")

    def _wait_spawned(self, uid: str, pending: Pending) -> None:
        """Until the worker that took it says spawned or rejected; DispatchDeferred if it
        goes silent first (its claim is released: nobody else would), DispatchError if it
        takes too long."""
        deadline = time.monotonic() + SPAWN_WAIT_S
        while not pending.done.wait(1.0):
            worker = pending.worker
            silent = self.silent_for(worker) if worker else None
            if silent is not None:
                self.abandoned.add(uid)
                with contextlib.suppress(FleetError):
                    self.broker.release_by_session(claim_session(uid))
                raise DispatchDeferred(f"worker {worker} took it and went silent "
                                       f"({silent:.0f}s) before starting it")
            if time.monotonic() > deadline:
                self.abandoned.add(uid)
                raise DispatchError(f"the worker took it but did not start it within "
                                    f"{SPAWN_WAIT_S:g}s")

    def silent_for(self, worker: str) -> float | None:
        """Seconds a worker has been silent past its timeout, else None."""
        with self._lock:
            entry = self._workers.get(worker)
        if entry is None:
            return None
        quiet = self._judged_at() - entry[1]
        return quiet if quiet > self.silent_after(entry[0]) else None

    def _judged_at(self) -> float:
        """The moment silence is judged as of: now, or while the console cannot read the
        records, its last look (what it cannot see is nobody's silence)."""
        now = time.monotonic()
        return min(now, self._looked_at + 2 * LOOK_EVERY_S) if self._blind else now

    def attach(self, uid: str, worker: str, host: str, pid: int, start_time: float | None,
               mirror: Path, received: int) -> RemoteAgent:
        agent = RemoteAgent(self, uid, worker, host, pid, start_time, mirror)
        agent.received = received
        self._register(agent)
        return agent

    def kill(self, agent: RemoteAgent, grace_s: float) -> bool:
        """Ask the agent's host to end it; False (said in its output) when it does not answer
        (or refuses, or someone else answers in its name)."""
        answer = self.ask_to_kill(agent.uid, agent.worker, grace_s)
        if answer is None or answer.kind != "killing":
            why = (f"refused the kill ({answer.note})" if answer is not None else
                   f"did not answer the kill within {KILL_ANSWER_S:g}s")
            agent.lose(f"host {agent.host} {why}; it may still run there")
            if answer is None:  # asked again until it is sure to stop
                threading.Thread(target=self.end_unwatched, args=(agent.uid, agent.worker),
                                 name=f"fleet-kill-{agent.uid[:8]}", daemon=True).start()
            return False
        return True

    def ask_to_watch(self, agent: RemoteAgent, on: bool) -> None:
        """A signed watch request (``on``: for the next WATCH_LEASE_S; off: no more) to the
        agent's host; renewed by the workers' watcher while the operator looks."""
        until = time.time() + WATCH_LEASE_S if on else 0.0
        body = wire.encode(wire.WatchRequest(uid=agent.uid, until=until,
                                             expires_at=time.time() + KILL_ANSWER_S * 2))
        agent.watch_renew_at = time.monotonic() + WATCH_LEASE_S / 3 if on else float("inf")
        with contextlib.suppress(FleetError):
            self.broker.request(wire.watch_subject(agent.worker), body, KILL_ANSWER_S)

    def ask_to_kill(self, uid: str, worker: str, grace_s: float) -> wire.AgentReport | None:
        """A signed kill request to the agent's host; its answer, when its key signed it."""
        body = wire.encode(wire.KillRequest(uid=uid, grace_s=grace_s,
                                            expires_at=time.time() + KILL_ANSWER_S * 2))
        subject = wire.kill_subject(worker)
        try:
            msg = self.broker.request(subject, body, KILL_ANSWER_S)
            answer = wire.decode(bytes(msg.data))
        except (FleetError, wire.WireError):
            return None
        signer = wire.signer_of(msg.subject, bytes(msg.data), msg.headers)
        if signer is None or signer != self.keys.key_of(worker) \
                or not isinstance(answer, wire.AgentReport) or answer.uid != uid:
            self.drop(f"an answer to a kill for {worker} not signed by its key")
            return None
        return answer

    # ------------------------------------------------------------ workers
    def refresh_workers(self) -> None:
        try:
            items = self.broker.kv_items(self.broker.workers_bucket)
        except FleetError:
            self._blind = True
            return
        if not items and self._workers:
            # Records live for minutes after their worker's last word: none at all, when
            # workers were seen, is a listing that came back short (it happens under load),
            # not every worker gone at once. Nobody is judged on it.
            self._blind = True
            return
        now = time.monotonic()
        with self._lock:
            blind_for = now - self._looked_at - 2 * LOOK_EVERY_S
            if blind_for > 0:
                # Time we could not read the records (our link or the broker was down) is
                # nobody's silence: each window is moved on by that much, not started over,
                # so a worker silent through a few hiccups is still judged in time; but each
                # gets one heartbeat (and a look) to be seen again after a long blindness.
                self._workers = {n: (rec, max(seen + blind_for, now - self.silent_after(rec)
                                              + rec.heartbeat_s + 2 * LOOK_EVERY_S))
                                 for n, (rec, seen) in self._workers.items()}
            self._looked_at = now
            self._blind = False
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
        """Active workers for this repository that spoke within their timeout (degraded
        ones included: see ``free_slots``)."""
        now = self._judged_at()
        with self._lock:
            return [rec for rec, seen in self._workers.values()
                    if rec.repo == self.key and rec.status == "active"
                    and now - seen <= self.silent_after(rec)]

    def take_slot(self, uid: str) -> Pending | None:
        """A free slot held for request ``uid`` (counted as a request not taken yet from
        now on; ``forget`` frees it), checked and held at once; None when none is free."""
        up = [w for w in self.workers_up() if not w.degraded]
        with self._lock:
            if self._free_slots(up) <= 0:
                return None
            pending = self._pending[uid] = Pending()
            return pending

    def _free_slots(self, up: list[wire.WorkerRecord]) -> int:
        """Slots the console can see free on ``up`` (caller holds the lock): their free
        slots, less the requests of this console no worker took yet. A worker's record is
        a heartbeat old, so the agents this console knows it started there count too."""
        ours: collections.Counter[str] = collections.Counter(
            a.worker for a in self._agents.values() if not a.ended.is_set())
        for pending in self._pending.values():
            if pending.worker:
                ours[pending.worker] += 1
        unanswered = sum(1 for p in self._pending.values() if not p.worker)
        return sum(max(0, w.max_parallel - max(w.running, ours[w.worker_id]))
                   for w in up) - unanswered

    def fleet_line(self) -> str:
        """``2 up for this repository, 4/4 slots busy; w3 degraded (…)`` for a waiting row."""
        up = self.workers_up()
        if not up:
            return "no worker is up for this repository"
        healthy = [w for w in up if not w.degraded]
        line = (f"{len(healthy)} up for this repository, "
                f"{sum(w.running for w in healthy)}/{sum(w.max_parallel for w in healthy)} "
                "slots busy")
        with self._lock:
            unanswered = sum(1 for p in self._pending.values() if not p.worker)
        if unanswered:
            line += f", {unanswered} request(s) of this console not taken yet"
        sick = [f"{w.worker_id} degraded ({one_line(w.degraded, 80)})"
                for w in up if w.degraded]
        return "; ".join([line, *sick])

    def degraded(self) -> list[tuple[str, str]]:
        """(worker, why) of the workers up that take no work now."""
        return sorted((w.worker_id, one_line(w.degraded, 120)) for w in self.workers_up()
                      if w.degraded)

    def busy(self, worker: str, uid: str) -> bool:
        with self._lock:
            entry = self._workers.get(worker)
        return entry is not None and uid in entry[0].busy

    def _watch_workers(self) -> None:
        while not self._stop.wait(LOOK_EVERY_S):
            with contextlib.suppress(ChumpError):  # a trust file made unreadable: keep the old
                self.keys.reload()
            self.refresh_workers()
            if self._blind:
                continue  # silence we could not have heard is nobody's fault
            with self._lock:
                agents = [a for a in self._agents.values() if not a.ended.is_set()]
            for agent in agents:
                if agent.watching and time.monotonic() >= agent.watch_renew_at:
                    self.ask_to_watch(agent, True)
            for agent in agents:
                silent = self.silent_for(agent.worker)
                if silent is not None:
                    agent.lose(f"LOST (host {agent.host} silent {silent:.0f}s)")
                    # Its claim would outlive it by hours: free the gap for another host.
                    with contextlib.suppress(FleetError):
                        self.broker.release_by_session(claim_session(agent.uid))

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            releases = list(self._releases)
        for thread in releases:  # the last outcomes' claims, before the link goes
            thread.join(5.0)
        self.broker.close()

    # ------------------------------------------------------------ upstream events
    def on_engine_event(self, event: EngineEvent) -> None:
        """The console's outcomes as upstream's DONE / STUCK events (never blocking)."""
        if not isinstance(event, DispatchChanged) or event.why != "outcome":
            return
        rec = event.dispatch
        if rec.outcome is None:
            return
        uid = rec.remote.partition("/")[2]
        if rec.outcome.kind == "shipped":
            body = wire.coord_event("DONE", self.session, gap=rec.gap_id,
                                    reason=f"PR #{rec.outcome.pr_number} merged")
            subject = wire.event_subject("DONE")
        else:
            body = wire.coord_event("STUCK", self.session, gap=rec.gap_id,
                                    reason=one_line(rec.reason(), 300))
            subject = wire.event_subject("STUCK")
        if not uid or rec.outcome.kind == "shipped":
            # A shipped gap keeps its claim until upstream's TTL (4 h) ends it: another
            # console that looked before our DONE reached it would otherwise find the gap
            # free and run it again (seen: a DONE stored is not yet a DONE read). By then the
            # DONE (kept 24 h) says it shipped.
            self.broker.publish_event(subject, body)
            return
        # The attempt failed: its gap is free for everyone once its STUCK is stored.
        self.release_claims([(rec.gap_id, uid)],
                            first=lambda: self.broker.publish_event(subject, body, wait=True))
