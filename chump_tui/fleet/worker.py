"""``chump-tui worker``: one per host; runs the agents a console asks for, in its own clone.

It registers in ``chump_workers`` and heartbeats; takes dispatch requests for its own
repository from the work queue (a durable pull consumer shared by all the repo's
workers), only while it has a free slot; claims the gap in ``chump_gaps`` as upstream
does; fetches, creates the worktree and spawns the agent with the same spawner, process
groups and logs as local mode; acks the request only then. Each agent's log file is
published in order as byte chunks (at most one message per agent per PUMP_S), then its
exit code; the claim is released after. Kill requests end the agent's group. Its table
is kept in a state file, so a restarted worker re-attaches to its agents (pid + start
time) and goes on publishing where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from chump_tui import numbers
from chump_tui.agent_process import AgentProcess, OutputLog
from chump_tui.backlog import Gap
from chump_tui.dispatch import dispatch_gap_with
from chump_tui.errors import ChumpError, DispatchError
from chump_tui.fleet import wire
from chump_tui.fleet.broker import Broker, ClaimHeld, FleetError
from chump_tui.outside_text import visible
from chump_tui.paths import slug, unsafe_id_reason
from chump_tui.safe_fs import real_dir
from chump_tui.spawners import RealSpawner
from chump_tui.steps import StepCancelled, StepRunner, StepTimeout
from chump_tui.watchdog import BusyProbe

PUMP_S = 0.05
CHUNK_BYTES = 256 * 1024
DEFAULT_HEARTBEAT_S = 5.0
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SAFE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")  # never an option to git


def origin_url(repo_root: Path) -> str:
    """The clone's origin URL (what requests are checked against); ChumpError without one."""
    try:
        done = StepRunner().run(["git", "-C", str(repo_root), "remote", "get-url", "origin"],
                                repo_root, os.environ, 30)
    except (StepTimeout, StepCancelled, OSError) as exc:
        raise ChumpError(f"{repo_root}: cannot run git ({exc})") from None
    url = done.stdout.decode("utf-8", errors="replace").strip()
    if done.returncode != 0 or not url:
        raise ChumpError(f"{repo_root}: the repository has no 'origin' remote")
    return url


@dataclass
class Hosted:
    """One agent this worker runs (also its row in the worker's state file)."""

    uid: str
    key: str
    gap_id: str
    console: str
    pid: int
    start_time: float
    log_path: str
    harness: str
    backend: str
    file_pos: int = 0  # how far the log file has been read
    sent: int = 0  # how many bytes of output have been published
    exit_code: int | None = None
    superseded: bool = False  # its gap was claimed by another session: being stopped

    @property
    def claim_session(self) -> str:
        return claim_session(self.uid)

    @classmethod
    def from_json(cls, row: object) -> Hosted:
        """A row of the worker's state file, every field checked (ValueError naming it)."""
        if not isinstance(row, dict):
            raise ValueError(f"a row is a {type(row).__name__}")
        checks: dict[str, Any] = {
            "pid": numbers.pid, "start_time": numbers.timestamp, "file_pos": numbers.offset,
            "sent": numbers.offset}
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = row.get(f.name)
            if f.name in checks:
                if checks[f.name](value) is None:
                    raise ValueError(f"field {f.name!r} is unusable")
            elif f.name == "exit_code":
                if value is not None and numbers.exit_code(value) is None:
                    raise ValueError("field 'exit_code' is unusable")
            elif f.name == "superseded":
                value = value is True
            elif not isinstance(value, str):
                raise ValueError(f"field {f.name!r} is not a string")
            values[f.name] = value
        return cls(**values)


def claim_session(uid: str) -> str:
    """The ``session_id`` of a worker's claim: whose attempt holds the gap."""
    return f"chump-tui:{uid}"


class Worker:
    def __init__(self, broker: Broker, repo_root: Path, name: str, max_parallel: int,
                 harness: str, environ: Mapping[str, str],
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 log: Any = None) -> None:
        if not WORKER_NAME.match(name):
            raise ChumpError(f"worker name {name!r}: use letters, digits, '-' and '_' "
                             "(at most 64)")
        self.broker = broker
        self.repo_root = repo_root
        self.name = name
        self.host = name  # what the console shows: the name the operator gave this host
        self.max_parallel = max_parallel
        self.harness = harness
        self.environ = dict(environ)
        self.heartbeat_s = heartbeat_s
        self.origin = origin_url(repo_root)
        self.key = wire.repo_key(self.origin)
        self.dir = repo_root / "sessions" / "chump-tui-worker"
        self.state_path = self.dir / f"{name}.json"
        self.log_dir = self.dir / "logs"
        self.agents: dict[str, tuple[Hosted, AgentProcess | None]] = {}
        self.started_at = wire.rfc3339()
        self._lock = threading.Lock()
        self._busy = BusyProbe()
        # Requests come from the network: what they say reaches the terminal only as
        # visible text, never as control sequences.
        self._log = log or (lambda text: print(visible(text), flush=True))
        self.stop = threading.Event()

    # ------------------------------------------------------------ lifecycle
    def run(self) -> None:
        for path in (self.repo_root / "sessions", self.dir, self.log_dir):
            path.mkdir(mode=0o700, exist_ok=True)
            real_dir(path)
        self._resume()
        self.broker.subscribe(wire.kill_subject(self.name), self._on_kill)
        queue = self.broker.work_queue(self.key)
        self._heartbeat("active")
        self._log(f"worker {self.name} on {socket.gethostname()}: {len(self.agents)} agent(s) "
                  "re-attached; "
                  f"serving {wire.normalize_origin(self.origin)} with {self.max_parallel} "
                  f"slot(s) at {self.broker.where}")
        next_beat = time.monotonic() + self.heartbeat_s
        while not self.stop.is_set():
            self._pump()
            if time.monotonic() >= next_beat:
                self._heartbeat("active")
                next_beat = time.monotonic() + self.heartbeat_s
            if self._running() < self.max_parallel:
                try:
                    msg = queue.fetch(PUMP_S)
                except FleetError as exc:
                    self._log(f"worker {self.name}: {exc}")
                    self.stop.wait(1.0)
                    continue
                if msg is not None:
                    self._take(msg, queue)
            else:
                self.stop.wait(PUMP_S)
        self._pump()
        self._save()
        with contextlib.suppress(FleetError):
            self._heartbeat("terminal")

    def _running(self) -> int:
        with self._lock:
            return sum(1 for hosted, _ in self.agents.values() if hosted.exit_code is None)

    def _heartbeat(self, status: str) -> None:
        with self._lock:
            running = [(h, p) for h, p in self.agents.values() if h.exit_code is None]
        if status == "active":
            with contextlib.suppress(FleetError):
                self._check_claims(running)
        busy = [h.uid for h, p in running if p is not None and self._busy.busy(p.pid)]
        record = wire.WorkerRecord(
            worker_id=self.name, backend="chump-tui", machine=socket.gethostname(),
            harness=self.harness, started_at=self.started_at, status=status,
            updated_at=wire.rfc3339(),
            current_gap=running[0][0].gap_id if running else None, repo=self.key,
            max_parallel=self.max_parallel, running=len(running), busy=busy,
            heartbeat_s=self.heartbeat_s)
        try:
            self.broker.kv_put(self.broker.workers_bucket, self.name, record.to_bytes())
        except FleetError as exc:
            self._log(f"worker {self.name}: heartbeat: {exc}")
        self._save()

    def _check_claims(self, running: list[tuple[Hosted, AgentProcess | None]]) -> None:
        """Each agent still holds its gap. A claim freed while this worker was silent (its
        agents were given up as LOST) is taken again; one another session holds now means
        the gap runs elsewhere: this agent is stopped, never a second worker on one gap."""
        for hosted, process in running:
            held = self.broker.claim_of(hosted.gap_id)
            if held is not None and held.session_id == hosted.claim_session:
                continue
            if held is None:
                try:
                    self.broker.claim(hosted.gap_id, wire.Claim(hosted.claim_session,
                                                                wire.rfc3339()))
                    continue
                except ClaimHeld as other:
                    held = other.claim
            if process is not None and not hosted.superseded:
                hosted.superseded = True
                self._log(f"worker {self.name}: {hosted.gap_id} ({hosted.key}) is claimed by "
                          f"{held.session_id if held else 'another session'} now; stopping it")
                threading.Thread(target=process.terminate_group, args=(5.0,),
                                 name=f"superseded-{process.pid}", daemon=True).start()

    # ------------------------------------------------------------ requests
    def _report(self, kind: str, uid: str, **fields: Any) -> None:
        report = wire.AgentReport(kind=kind, uid=uid, worker=self.name, host=self.host,
                                  **fields)
        self.broker.publish(wire.agents_subject(self.key, self.name), wire.encode(report))

    def _take(self, msg: Msg, queue: Any) -> None:
        try:
            request = wire.decode(bytes(msg.data))
        except wire.WireError as exc:
            self._log(f"worker {self.name}: dropped a malformed dispatch request ({exc})")
            queue.ack(msg)
            return
        if not isinstance(request, wire.DispatchRequest):
            self._log(f"worker {self.name}: dropped a {type(request).__name__} on the queue")
            queue.ack(msg)
            return
        try:
            reason = self._refusal(request)
            if reason is None:
                self._report("accepted", request.uid)
                reason = self._start(request, lambda: queue.in_progress(msg))
            if reason is not None:
                self._report("rejected", request.uid, note=reason)
                self._log(f"worker {self.name}: {request.gap_id}: {reason}")
        except FleetError as exc:
            # Not acked: the server hands the request out again.
            self._log(f"worker {self.name}: {request.gap_id}: {exc}")
            return
        try:
            queue.ack(msg)
        except FleetError as exc:  # redelivered, then refused: expired or already running
            self._log(f"worker {self.name}: {request.gap_id}: ack: {exc}")

    def _refusal(self, request: wire.DispatchRequest) -> str | None:
        if wire.normalize_origin(request.origin) != wire.normalize_origin(self.origin):
            return (f"worker {self.name} serves {wire.normalize_origin(self.origin)}, "
                    f"not {wire.normalize_origin(request.origin)}")
        if time.time() > request.expires_at:
            return "the request expired before a worker took it"
        unsafe = unsafe_id_reason(request.gap_id)
        if unsafe:
            return f"gap {request.gap_id!r}: {unsafe}"
        if not SAFE_REF.match(request.base_ref) or ".." in request.base_ref:
            return f"base ref {request.base_ref!r} is not a plain ref name"
        with self._lock:
            if request.uid in self.agents:
                return "already running here"
        return None

    def _start(self, request: wire.DispatchRequest, keep_alive: Any) -> str | None:
        session = claim_session(request.uid)
        try:
            self.broker.claim(request.gap_id, wire.Claim(session, wire.rfc3339()))
        except ClaimHeld as held:
            claim = held.claim
            since = f" since {claim.claimed_at}" if claim and claim.claimed_at else ""
            return f"claimed in {self.broker.gap_bucket} by {held}{since}"
        keep_alive()
        self._fetch_origin()
        spawner = RealSpawner(self.repo_root, self.environ, request.harness or self.harness)
        log_path = self.log_dir / f"{slug(request.gap_id)}-{request.uid[:12]}.log"
        gap = Gap(id=request.gap_id, title=request.title, priority="P1", effort="m",
                  status="open")
        try:
            handle = dispatch_gap_with(spawner, gap, self.repo_root, request.base_ref,
                                       log_path, OutputLog(), None, environ=self.environ)
        except DispatchError as exc:
            self.broker.release(request.gap_id, session)
            return str(exc)
        process = handle.process
        assert process is not None
        hosted = Hosted(uid=request.uid, key=request.key, gap_id=request.gap_id,
                        console=request.console, pid=process.pid,
                        start_time=process.start_time or 0.0, log_path=str(log_path),
                        harness=handle.harness, backend=handle.backend)
        with self._lock:
            self.agents[request.uid] = (hosted, process)
        self._save()
        self._report("spawned", request.uid, pid=hosted.pid, start_time=hosted.start_time,
                     harness=hosted.harness, backend=hosted.backend,
                     note=handle.claim_note or "")
        with contextlib.suppress(FleetError):
            self.broker.publish(wire.event_subject("INTENT"),
                                wire.coord_event("INTENT", session, gap=request.gap_id))
        self._log(f"worker {self.name}: {request.gap_id} ({request.key}) as PID {hosted.pid}")
        return None

    def _fetch_origin(self) -> None:
        """New worktrees branch from the base ref as origin has it now."""
        with contextlib.suppress(StepTimeout, StepCancelled, OSError):
            StepRunner().run(["git", "-C", str(self.repo_root), "fetch", "--quiet", "origin"],
                             self.repo_root, self.environ, 120)

    # ------------------------------------------------------------ agents' output
    def _pump(self) -> None:
        """Publish what each agent wrote since the last round (one message per agent, all in
        one round trip), then its exit once all of its output is out. Nothing advances until
        the server took it: a broker that is away (restarting, failing over) delays the
        output, never loses or reorders it."""
        with self._lock:
            agents = [(h, p) for h, p in self.agents.values() if h.exit_code is None]
        ended = {h.uid: p is None or p.poll() is not None for h, p in agents}
        chunks = [(h, *self._read(h)) for h, _ in agents]
        chunks = [(h, pos, data) for h, pos, data in chunks if data]
        # One message per round for every agent (more only past wire.BATCH_BYTES): the broker
        # and the console handle a few messages a second, not one per agent and round.
        reports = [wire.AgentReport(kind="output", uid=h.uid, worker=self.name, host=self.host,
                                    offset=h.sent, data=data) for h, _pos, data in chunks]
        messages = wire.encode_reports(reports)
        try:
            stored = self.broker.publish_many(
                [(wire.agents_subject(self.key, self.name), m) for m in messages])
        except FleetError as exc:
            self._log(f"worker {self.name}: publishing output: {exc}")
            return
        more = set()
        if all(stored):  # else all of it again next round: the console skips what it has
            for hosted, position, data in chunks:
                hosted.file_pos = position + len(data)
                hosted.sent += len(data)
        for hosted, _position, data in chunks:
            if not all(stored) or len(data) == CHUNK_BYTES:
                more.add(hosted.uid)  # its exit is reported after all of its output
        for hosted, process in agents:
            if hosted.uid in more or not ended[hosted.uid]:
                continue
            code = process.poll() if process is not None else 0
            try:
                self._report("exited", hosted.uid, code=0 if code is None else code)
            except FleetError as exc:
                self._log(f"worker {self.name}: publishing {hosted.key}: {exc}")
                return
            hosted.exit_code = 0 if code is None else code
            with contextlib.suppress(FleetError):
                self.broker.release(hosted.gap_id, hosted.claim_session)
            with self._lock:
                self.agents.pop(hosted.uid, None)
            self._save()
            self._log(f"worker {self.name}: {hosted.gap_id} ({hosted.key}) exited "
                      f"{hosted.exit_code}")

    def _read(self, hosted: Hosted) -> tuple[int, bytes]:
        """(where the chunk starts in the file, the chunk); the position is not advanced."""
        try:
            with open(hosted.log_path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < hosted.file_pos:  # capped (truncated) by its follower
                    hosted.file_pos = 0
                fh.seek(hosted.file_pos)
                return hosted.file_pos, fh.read(CHUNK_BYTES)
        except OSError:
            return hosted.file_pos, b""

    # ------------------------------------------------------------ kills
    async def _on_kill(self, msg: Msg) -> None:
        try:
            request = wire.decode(bytes(msg.data))
            if not isinstance(request, wire.KillRequest):
                raise wire.WireError(f"a {type(request).__name__} on the kill subject")
        except wire.WireError as exc:
            self._log(f"worker {self.name}: dropped a malformed kill request ({exc})")
            return
        with self._lock:
            entry = self.agents.get(request.uid)
        kind = "rejected"
        if entry is not None and entry[1] is not None:
            kind = "killing"
            process = entry[1]
            grace = max(0.0, min(request.grace_s, 3600.0))
            threading.Thread(target=process.terminate_group, args=(grace,),
                             name=f"kill-{process.pid}", daemon=True).start()
        reply = wire.AgentReport(kind=kind, uid=request.uid, worker=self.name, host=self.host,
                                 note="" if entry else "no such agent here")
        if msg.reply:
            await msg.respond(wire.encode(reply))

    # ------------------------------------------------------------ state file
    def _save(self) -> None:
        with self._lock:
            rows = [asdict(h) for h, _ in self.agents.values()]
        tmp = self.state_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"worker": self.name, "agents": rows}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)

    def _resume(self) -> None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            rows = data["agents"]
            if not isinstance(rows, list):
                raise TypeError("'agents' is not a list")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._log(f"worker {self.name}: {self.state_path}: unreadable ({exc}); "
                      "starting empty")
            return
        hosted: list[Hosted] = []
        for number, row in enumerate(rows, 1):
            try:
                hosted.append(Hosted.from_json(row))
            except ValueError as exc:  # one bad row is left out; the others re-attach
                self._log(f"worker {self.name}: {self.state_path}: row {number} left out "
                          f"({exc})")
        for h in hosted:
            if not Path(h.log_path).resolve().is_relative_to(self.log_dir.resolve()):
                self._log(f"worker {self.name}: {h.key}: log outside {self.log_dir}; dropped")
                continue
            process = AgentProcess.attach(h.pid, h.start_time, h.log_path)
            with self._lock:
                self.agents[h.uid] = (h, process)
            self._log(f"worker {self.name}: {h.gap_id} ({h.key}) pid {h.pid} "
                      + ("re-attached" if process else "ended while the worker was down"))

