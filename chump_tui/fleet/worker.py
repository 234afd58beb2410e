"""``chump-tui worker``: one per host; runs the agents a console asks for, in its own clone.

It registers in ``chump_workers`` (a presence record signed with its key) and heartbeats;
takes dispatch requests for its own repository from the work queue (a durable pull
consumer shared by all the repo's workers), only while it has a free slot. A request is
obeyed only after every check of ``worker_gate`` (signed by a trusted console, fresh, for
a gap its own backlog would pick at its own base, with a harness it allows) and is then
marked taken fleet-wide; the worker claims the gap in ``chump_gaps`` as upstream does,
creates the worktree and spawns the agent with the same spawner, process groups and logs
as local mode, and acks the request only then. Whatever fails after the claim releases it
and removes what this request created. Each agent's output goes out redacted, in order
(``worker_output``), then its exit code; the claim of an agent that failed is released
after (retried until the broker takes it), that of one that exited 0 by its console once
it has the outcome. Kill requests are obeyed only from the console that dispatched the
agent. Its table is kept in a state file, so a restarted worker re-attaches to its agents
(pid + start time) and goes on publishing where it stopped. No message, however malformed
or hostile, ends the worker. Its health (degraded, fenced while cut off from the broker)
is ``worker_health``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from chump_tui import numbers
from chump_tui.agent_process import AgentProcess, OutputLog
from chump_tui.backlog import Backlog, Gap
from chump_tui.dispatch import dispatch_gap_with
from chump_tui.errors import ChumpError, DispatchError
from chump_tui.fleet import wire
from chump_tui.fleet.backlog_at_base import BacklogAtBase
from chump_tui.fleet.broker import Broker, ClaimHeld, FleetError, WorkQueue
from chump_tui.fleet.identity import Identity, TrustList
from chump_tui.fleet.worker_gate import RequestGate
from chump_tui.fleet.worker_health import (
    DEFAULT_DEGRADE_AFTER,
    DEFAULT_PROBE_EVERY_S,
    Fence,
    HostHealth,
)
from chump_tui.fleet.worker_output import OutputPump
from chump_tui.harness import stream_format
from chump_tui.log_lines import Redactor, secret_values
from chump_tui.outside_text import one_line, visible
from chump_tui.paths import dispatch_paths, slug
from chump_tui.safe_fs import real_dir
from chump_tui.spawners import RealSpawner
from chump_tui.steps import StepCancelled, StepRunner, StepTimeout
from chump_tui.watchdog import BusyProbe

PUMP_S = 0.05
MAX_WATCH_S = 120.0  # a watch lasts this long unless renewed (its console renews it)
DEFAULT_HEARTBEAT_S = 5.0
REPORT_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0)  # about a minute
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
    console_key: str = ""  # the key that signed its request: only it may kill the agent
    output_mode: str = "full"  # what its console asked for: every byte, or summaries

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
            if f.name not in row and f.default is not MISSING:
                continue  # a field newer than the file
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
                 harnesses: list[str], environ: Mapping[str, str], identity: Identity,
                 trust: TrustList, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 log: Callable[[str], None] | None = None, base_ref: str = "origin/main",
                 backlog_path: Path | None = None, on_cut_off: str = "pause",
                 degrade_after: int = DEFAULT_DEGRADE_AFTER,
                 probe_every_s: float = DEFAULT_PROBE_EVERY_S) -> None:
        if not WORKER_NAME.match(name):
            raise ChumpError(f"worker name {name!r}: use letters, digits, '-' and '_' "
                             "(at most 64)")
        if not SAFE_REF.match(base_ref) or ".." in base_ref:
            raise ChumpError(f"base {base_ref!r} is not a plain ref name")
        if not trust.keys("console"):
            raise ChumpError("no console is trusted: give --trust-console KEY (a console "
                             "prints its key at start) or a trust file, or set "
                             "CHUMP_FLEET_TRUST")
        self.broker = broker
        self.repo_root = repo_root
        self.name = name
        self.host = name  # what the console shows: the name the operator gave this host
        self.max_parallel = max_parallel
        self.harnesses = harnesses
        self.harness = harnesses[0]
        self.environ = dict(environ)
        self.identity = identity
        self.heartbeat_s = heartbeat_s
        self.base_ref = base_ref
        self.origin = origin_url(repo_root)
        self.key = wire.repo_key(self.origin)
        self.dir = repo_root / "sessions" / "chump-tui-worker"
        self.state_path = self.dir / f"{name}.json"
        self.log_dir = self.dir / "logs"
        self.agents: dict[str, tuple[Hosted, AgentProcess | None]] = {}
        self.started_at = wire.rfc3339()
        self._lock = threading.Lock()
        self._saving = threading.Lock()
        self._stopping: set[str] = set()  # uids being killed: not ended until their group is
        self._busy = BusyProbe()
        # Secrets of this host never leave it: what it publishes is redacted first.
        self.redactor = Redactor(secret_values(self.environ))
        # Requests come from the network: what they say reaches the terminal only as
        # visible text, never as control sequences.
        self._log = log or (lambda text: print(visible(text), flush=True))
        self.backlog = BacklogAtBase(repo_root, base_ref, backlog_path, self.environ)
        self.gate = RequestGate(self.origin, base_ref, harnesses, trust, self._fresh_backlog)
        self.pump = OutputPump(broker, wire.agents_subject(self.key, name), name,
                               self.redactor, self._log)
        self.stop = threading.Event()
        say = self._say
        self.health = HostHealth(self._probe, say, degrade_after, probe_every_s)
        self.fence = Fence(heartbeat_s, on_cut_off, self._running_processes, self._stop_uid,
                           say)
        self._unreleased: dict[str, str] = {}  # gap id -> claim session not released yet
        self._awaiting: dict[str, float] = {}  # uid -> since when it waits to be taken back
        self.take_back_s = max(30.0, 6 * heartbeat_s)

    def _say(self, text: str) -> None:
        self._log(f"worker {self.name}: {text}")

    # ------------------------------------------------------------ lifecycle
    def run(self) -> None:
        for path in (self.repo_root / "sessions", self.dir, self.log_dir):
            path.mkdir(mode=0o700, exist_ok=True)
            real_dir(path)
        self._resume()
        self.broker.subscribe(wire.kill_subject(self.name), self._on_kill)
        self.broker.subscribe(wire.watch_subject(self.name), self._on_watch)
        queue = self.broker.work_queue(self.key)
        self._heartbeat("active")
        self._log(f"worker {self.name} on {socket.gethostname()}: {len(self.agents)} agent(s) "
                  "re-attached; "
                  f"serving {wire.normalize_origin(self.origin)} with {self.max_parallel} "
                  f"slot(s) at {self.broker.where}")
        self._log(f"worker {self.name}: signs with {self.identity.public_key}; obeys "
                  f"{len(self.gate.trust.keys('console'))} console key(s); base "
                  f"{self.base_ref}; harness {', '.join(self.harnesses)}")
        threading.Thread(target=self._watch_the_fence, name="fence", daemon=True).start()
        # Presence on a thread of its own: a request that takes a minute to start (a big
        # fetch, a slow claim script) must not look like silence, nor fence the agents.
        beating = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beating.start()
        while not self.stop.is_set():
            self._pump()
            if self._running() < self.max_parallel and not self.fence.fenced \
                    and self.health.may_take_work():
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
        beating.join(self.heartbeat_s + 30)
        self._save()
        with contextlib.suppress(FleetError):
            self._heartbeat("terminal")

    def _beat(self) -> None:
        while not self.stop.wait(self.heartbeat_s):
            self._heartbeat("active")

    def _watch_the_fence(self) -> None:
        while not self.stop.wait(0.25):
            self.fence.check()

    def _running_processes(self) -> list[tuple[str, AgentProcess]]:
        with self._lock:
            return [(h.uid, p) for h, p in self.agents.values()
                    if h.exit_code is None and p is not None and h.uid not in self._stopping]

    def _stop_uid(self, uid: str, process: AgentProcess) -> None:
        with self._lock:
            entry = self.agents.get(uid)
            if entry is None or uid in self._stopping:
                return
        self._stop(entry[0], process, 5.0)

    def _running(self) -> int:
        with self._lock:
            return sum(1 for hosted, _ in self.agents.values() if hosted.exit_code is None)

    def _heartbeat(self, status: str) -> None:
        with self._lock:
            running = [(h, p) for h, p in self.agents.values() if h.exit_code is None]
        checked = False
        if status == "active":
            with contextlib.suppress(FleetError):
                self._check_claims(running)
                checked = True
            self._release_leftover_claims()
            self._reload_trust()
        busy = [h.uid for h, p in running if p is not None and self._busy.busy(p.pid)]
        record = wire.WorkerRecord(
            worker_id=self.name, backend="chump-tui", machine=socket.gethostname(),
            harness=self.harness, started_at=self.started_at, status=status,
            updated_at=wire.rfc3339(),
            current_gap=running[0][0].gap_id if running else None, repo=self.key,
            max_parallel=self.max_parallel, running=len(running), busy=busy,
            heartbeat_s=self.heartbeat_s, degraded=self.health.reason)
        try:
            self.broker.kv_put(self.broker.workers_bucket, self.name,
                               record.signed(self.identity))
        except FleetError as exc:
            self._log(f"worker {self.name}: heartbeat: {exc}")
            if self._presence_unreadable():
                self.fence.renewed()
        else:
            self.fence.renewed()
            if checked:  # the claims were read just now: each paused agent's is known
                self.fence.lift(self._still_holds)
        self._save()

    def _presence_unreadable(self) -> bool:
        """The broker answers this worker but nobody can read the presence bucket (the one
        cluster node holding upstream's one-replica bucket is gone): no console can judge
        anyone's silence meanwhile, so there is nothing to fence against."""
        try:
            self.broker.jetstream_answers()
        except FleetError:
            return False  # cut off: the fence's case
        try:
            self.broker.kv_get(self.broker.workers_bucket, self.name)
        except FleetError:
            return True
        return False

    def _still_holds(self, uid: str) -> bool:
        with self._lock:
            entry = self.agents.get(uid)
        return entry is not None and not entry[0].superseded and uid not in self._awaiting

    def _release(self, gap_id: str, session: str) -> None:
        """Release a claim now, or at the next heartbeats until the broker takes it: a claim
        must not outlive its agent by the hours of its TTL."""
        try:
            self.broker.release(gap_id, session)
        except FleetError:
            with self._lock:
                self._unreleased[gap_id] = session
            return
        with self._lock:
            if self._unreleased.get(gap_id) == session:
                del self._unreleased[gap_id]

    def _release_leftover_claims(self) -> None:
        with self._lock:
            leftover = list(self._unreleased.items())
        for gap_id, session in leftover:
            self._release(gap_id, session)

    def _reload_trust(self) -> None:
        """A trust file changed on disk (a console's key was rotated): read it again."""
        try:
            if self.gate.trust.reload_if_changed():
                self._log(f"worker {self.name}: trust file re-read; obeys "
                          f"{len(self.gate.trust.keys('console'))} console key(s)")
        except ChumpError as exc:
            self._log(f"worker {self.name}: {exc}; keeping the keys read before")

    def _check_claims(self, running: list[tuple[Hosted, AgentProcess | None]]) -> None:
        """Each agent still holds its gap. One another session holds now runs elsewhere:
        this agent is stopped, never a second worker on one gap. One whose claim was freed
        while this worker was silent (its console gave it up as LOST) is paused until its
        console takes it back (claims the gap again in its name, and follows it), and
        stopped if it does not within ``take_back_s``: an agent nobody watches never
        runs on."""
        now = time.monotonic()
        for hosted, process in running:
            if process is None or hosted.superseded:
                continue
            held = self.broker.claim_of(hosted.gap_id)
            if held is not None and held.session_id == hosted.claim_session:
                if self._awaiting.pop(hosted.uid, None) is not None:
                    process.signal_group(signal.SIGCONT)
                    self._say(f"{hosted.gap_id} ({hosted.key}) taken back by its console; "
                              "going on")
                continue
            if held is None:
                since = self._awaiting.setdefault(hosted.uid, now)
                if since == now:
                    process.signal_group(signal.SIGSTOP)
                    self._note_in_log(hosted, "its claim was freed while this worker was cut "
                                              "off; paused until its console takes it back")
                    self._say(f"{hosted.gap_id} ({hosted.key}): claim freed while cut off; "
                              "paused until its console takes it back")
                elif now - since > self.take_back_s:
                    hosted.superseded = True
                    self._say(f"{hosted.gap_id} ({hosted.key}): its console did not take it "
                              f"back within {self.take_back_s:g}s; stopping it")
                    self._stop(hosted, process, 5.0)
                continue
            hosted.superseded = True
            self._say(f"{hosted.gap_id} ({hosted.key}) is claimed by {held.session_id} now; "
                      "stopping it")
            self._stop(hosted, process, 5.0)

    def _note_in_log(self, hosted: Hosted, text: str) -> None:
        """A line in a paused agent's log (nothing else writes it meanwhile), so its console
        hears from it again: that is how it learns the agent is back."""
        with contextlib.suppress(OSError):
            fd = os.open(hosted.log_path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            try:
                os.write(fd, f"\n[chump-tui] worker {self.name}: {text}\n".encode())
            finally:
                os.close(fd)

    def _stop(self, hosted: Hosted, process: AgentProcess, grace_s: float) -> None:
        """Kill an agent on a thread of its own (the agent CLI at once, its tools after the
        grace); its exit is reported once its whole group is gone."""
        with self._lock:
            self._stopping.add(hosted.uid)
        paused = self.fence.is_paused(hosted.uid) or hosted.uid in self._awaiting

        def run() -> None:
            try:
                if paused:  # stopped mid-work: nothing of its would clean up anyway
                    process.signal_group(signal.SIGKILL)
                process.terminate_group(grace_s, bool(hosted.harness))
            finally:
                with self._lock:
                    self._stopping.discard(hosted.uid)

        threading.Thread(target=run, name=f"kill-{process.pid}", daemon=True).start()

    # ------------------------------------------------------------ requests
    def _report(self, kind: str, uid: str, **fields: Any) -> None:
        report = wire.AgentReport(kind=kind, uid=uid, worker=self.name, host=self.host,
                                  **fields)
        self.broker.publish(wire.agents_subject(self.key, self.name), wire.encode(report))

    def _report_until_stored(self, kind: str, uid: str, **fields: Any) -> bool:
        """A report the console cannot do without (its agent runs), tried through a broker's
        hiccup (a leader election, a node partitioned off) for about a minute."""
        for wait in (*REPORT_RETRY_S, None):
            try:
                self._report(kind, uid, **fields)
                return True
            except FleetError as exc:
                self._log(f"worker {self.name}: reporting {kind} for {uid[:12]}: {exc}")
                if wait is None or self.stop.wait(wait):
                    return False
        return False

    def _take(self, msg: Msg, queue: WorkQueue) -> None:
        """One request off the queue: obeyed, refused, or (a broker error) left for the
        queue to hand out again. Nothing in it can end the worker."""
        try:
            self._handle(msg, lambda: queue.in_progress(msg))
        except FleetError as exc:  # not acked: the server hands the request out again
            self._log(f"worker {self.name}: {exc}")
            return
        except Exception as exc:
            self._log(f"worker {self.name}: a request failed "
                      f"({type(exc).__name__}: {self.redactor(str(exc))})")
        try:
            queue.ack(msg)
        except FleetError as exc:  # redelivered, then refused: expired or already taken
            self._log(f"worker {self.name}: ack: {exc}")

    def _handle(self, msg: Msg, keep_alive: Callable[[], None]) -> None:
        payload = bytes(msg.data)
        signer = wire.signer_of(msg.subject, payload, msg.headers)
        try:
            request = wire.decode(payload)
        except wire.WireError as exc:
            self._log(f"worker {self.name}: dropped a malformed dispatch request ({exc})")
            return
        if not isinstance(request, wire.DispatchRequest):
            self._log(f"worker {self.name}: dropped a {type(request).__name__} on the queue")
            return
        keep_alive()
        verdict = self.gate.check(request, signer)
        reason, refusal = verdict.refusal, verdict.kind
        if reason is None and not self.broker.take_request(request.uid, self.name):
            # A replay, another worker's, or the console gave up on it: never run twice.
            reason, refusal = "the request was taken before (a replay, another worker " \
                              "has it, or its console gave up waiting)", "retry"
        if reason is None:
            assert verdict.gap is not None and signer is not None
            self._report("accepted", request.uid, request_key=signer)
            try:
                reason, refusal = self._start(request, verdict.gap, signer, keep_alive)
            except FleetError as exc:  # the broker's trouble: the console tries again
                reason, refusal = f"the broker failed this worker ({exc})", "retry"
        if reason is not None:
            reason = self.redactor(reason)
            self._report("rejected", request.uid, note=reason, request_key=signer or "",
                         refusal=refusal)
            self._log(f"worker {self.name}: refused {one_line(request.gap_id, 100)} "
                      f"({one_line(request.key, 100)}): {reason}")

    def _fresh_backlog(self) -> Backlog:
        """The backlog at the base as origin has it now (fetched first); ChumpError when
        origin cannot be fetched (this host is degraded until it can)."""
        failed = self._fetch_origin()
        if failed is not None:
            self.health.cannot_fetch(failed)
            raise ChumpError(f"git fetch origin failed: {failed}")
        return self.backlog.get()

    def _start(self, request: wire.DispatchRequest, gap: Gap, signer: str,
               keep_alive: Callable[[], None]) -> tuple[str | None, str]:
        """Claim, worktree, agent: (None, "") once it runs, else why not and whose fault
        (a report's ``refusal``), with nothing of this request left behind (claim released,
        a worktree and branch it made removed)."""
        session = claim_session(request.uid)
        try:
            self.broker.claim(gap.id, wire.Claim(session, wire.rfc3339()))
        except ClaimHeld as held:
            claim = held.claim
            since = f" since {claim.claimed_at}" if claim and claim.claimed_at else ""
            return f"claimed in {self.broker.gap_bucket} by {held}{since}", "claimed"
        keep_alive()
        worktree, branch = dispatch_paths(self.repo_root, gap.id)
        had = (worktree.exists(), self._branch_exists(branch))
        spawner = RealSpawner(self.repo_root, self.environ, request.harness)
        log_path = self.log_dir / f"{slug(gap.id)}-{request.uid[:12]}.log"
        output = OutputLog()
        try:
            handle = dispatch_gap_with(spawner, gap, self.repo_root, self.base_ref,
                                       log_path, output, None, environ=self.environ)
            assert handle.process is not None
        except Exception as exc:  # any failure: this request's, never the worker's
            self._undo(gap.id, session, worktree, branch, had)
            why = str(exc) if isinstance(exc, DispatchError) else \
                f"starting {gap.id}: {type(exc).__name__}: {exc}"
            self.health.start_failed(why)  # this host's trouble, most likely: try another
            return why, "host"
        self.health.started()
        process = handle.process
        hosted = Hosted(uid=request.uid, key=request.key, gap_id=gap.id,
                        console=request.console, pid=process.pid,
                        start_time=process.start_time or 0.0, log_path=str(log_path),
                        harness=handle.harness, backend=handle.backend, console_key=signer,
                        output_mode=request.output)
        self.pump.outputs[request.uid] = output
        with self._lock:
            self.agents[request.uid] = (hosted, process)
        self._save()
        said = self._report_until_stored(
            "spawned", request.uid, pid=hosted.pid, start_time=hosted.start_time,
            harness=hosted.harness, backend=hosted.backend,
            note=self.redactor(handle.claim_note or ""), request_key=signer)
        if not said:
            # Its console waits for this and never heard it: an agent nobody follows would
            # run on. Stopped, and everything of the request undone, as a failed start.
            process.terminate_group(5.0, bool(hosted.harness))
            with self._lock:
                self.agents.pop(request.uid, None)
            self.pump.outputs.pop(request.uid, None)
            self._save()
            self._undo(gap.id, session, worktree, branch, had)
            return "the broker did not take this worker's reports for a minute", "retry"
        self.broker.publish_event(wire.event_subject("INTENT"),
                                  wire.coord_event("INTENT", session, gap=gap.id))
        self._log(f"worker {self.name}: {gap.id} ({request.key}) as PID {hosted.pid}")
        return None, ""

    def _undo(self, gap_id: str, session: str, worktree: Path, branch: str,
              had: tuple[bool, bool]) -> None:
        """Release the claim; remove the worktree and the branch if this request made them."""
        with contextlib.suppress(FleetError):
            self.broker.release(gap_id, session)
        had_worktree, had_branch = had
        steps = []
        if not had_worktree and worktree.exists():
            steps.append(["worktree", "remove", "--force", str(worktree)])
        if not had_branch and self._branch_exists(branch):
            steps.append(["branch", "-D", branch])
        for args in steps:
            with contextlib.suppress(StepTimeout, StepCancelled, OSError):
                StepRunner().run(["git", "-C", str(self.repo_root), *args], self.repo_root,
                                 self.environ, 60)

    def _branch_exists(self, branch: str) -> bool:
        try:
            done = StepRunner().run(["git", "-C", str(self.repo_root), "rev-parse", "--verify",
                                     "--quiet", f"refs/heads/{branch}"], self.repo_root,
                                    self.environ, 30)
        except (StepTimeout, StepCancelled, OSError):
            return True  # unknown: never delete what may not be ours
        return done.returncode == 0

    def _fetch_origin(self) -> str | None:
        """New worktrees branch from the base ref as origin has it now; what went wrong,
        or None."""
        try:
            done = StepRunner().run(["git", "-C", str(self.repo_root), "fetch", "--quiet",
                                     "origin"], self.repo_root, self.environ, 120)
        except (StepTimeout, StepCancelled, OSError) as exc:
            return str(exc)
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            return one_line(said[-1] if said else f"exit {done.returncode}", 200)
        return None

    def _probe(self) -> str | None:
        """Whether a degraded host can work again: origin fetches and a directory can be
        made where its worktrees go (None), else what is still wrong."""
        failed = self._fetch_origin()
        if failed is not None:
            return f"git fetch origin: {failed}"
        parent = dispatch_paths(self.repo_root, "probe")[0].parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / f".chump-probe-{os.getpid()}"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            return f"cannot make a worktree in {parent}: {exc.strerror or exc}"
        return None

    # ------------------------------------------------------------ agents' output
    def _pump(self) -> None:
        with self._lock:
            agents = [(h, p) for h, p in self.agents.values() if h.exit_code is None]
            stopping = set(self._stopping)
        for hosted in self.pump.round(agents, stopping):
            # An agent that exited 0 has a PR on the way: its console releases the claim
            # once it records the outcome, so no other console starts the gap meanwhile.
            if hosted.exit_code != 0:
                self._release(hosted.gap_id, hosted.claim_session)
            with self._lock:
                self.agents.pop(hosted.uid, None)
                self._awaiting.pop(hosted.uid, None)
            self._save()
            self._log(f"worker {self.name}: {hosted.gap_id} ({hosted.key}) exited "
                      f"{hosted.exit_code}")

    # ------------------------------------------------------------ kills
    async def _on_kill(self, msg: Msg) -> None:
        """A kill is obeyed only when the console that dispatched the agent signed it."""
        read = self._console_request(msg, wire.KillRequest, "kill")
        if read is None:
            return
        request, entry, refusal = read
        assert isinstance(request, wire.KillRequest)
        if refusal is None and entry is not None and entry[1] is not None:
            self._stop(entry[0], entry[1], max(0.0, min(request.grace_s, 3600.0)))
        elif refusal is not None and entry is not None:
            self._log(f"worker {self.name}: refused a kill of {entry[0].key}: {refusal}")
        await self._answer(msg, request.uid, "killing", refusal)

    async def _on_watch(self, msg: Msg) -> None:
        """A console watches an agent (its whole output is sent meanwhile): obeyed only
        from the console that dispatched it, as a kill is."""
        read = self._console_request(msg, wire.WatchRequest, "watch")
        if read is None:
            return
        request, entry, refusal = read
        assert isinstance(request, wire.WatchRequest)
        if refusal is None and entry is not None:
            self.pump.watch(entry[0], min(request.until, time.time() + MAX_WATCH_S))
        await self._answer(msg, request.uid, "watching", refusal)

    def _console_request(self, msg: Msg, expected: type, what: str) -> tuple[
            wire.KillRequest | wire.WatchRequest, tuple[Hosted, AgentProcess | None] | None,
            str | None] | None:
        """A kill or watch request, its agent here and why it is refused (None: obeyed);
        None when it is not one (logged and dropped)."""
        payload = bytes(msg.data)
        signer = wire.signer_of(msg.subject, payload, msg.headers)
        try:
            request = wire.decode(payload)
            if not isinstance(request, expected) or not isinstance(
                    request, wire.KillRequest | wire.WatchRequest):
                raise wire.WireError(f"a {type(request).__name__} on the {what} subject")
        except wire.WireError as exc:
            self._log(f"worker {self.name}: dropped a malformed {what} request ({exc})")
            return None
        with self._lock:
            entry = self.agents.get(request.uid)
        return request, entry, self._kill_refusal(request, signer, entry)

    async def _answer(self, msg: Msg, uid: str, yes: str, refusal: str | None) -> None:
        reply = wire.AgentReport(kind="rejected" if refusal else yes, uid=uid,
                                 worker=self.name, host=self.host, note=refusal or "")
        with contextlib.suppress(Exception):  # the asker went away: nothing to answer
            await self.broker.respond(msg, wire.encode(reply))

    def _kill_refusal(self, request: wire.KillRequest | wire.WatchRequest, signer: str | None,
                      entry: tuple[Hosted, AgentProcess | None] | None) -> str | None:
        """Why a kill (or a watch) is not obeyed, or None."""
        if signer is None or not self.gate.trust.trusts(signer, "console"):
            return "not signed by a console this worker trusts"
        if time.time() > request.expires_at:
            return "the request expired"
        if entry is None or entry[1] is None:
            return wire.NO_SUCH_AGENT
        if entry[0].console_key and signer != entry[0].console_key:
            return "not signed by the console that dispatched it"
        return None

    # ------------------------------------------------------------ state file
    def _save(self) -> None:
        with self._lock:
            rows = [asdict(h) for h, _ in self.agents.values()]
        tmp = self.state_path.with_suffix(".tmp")
        with self._saving, contextlib.suppress(OSError):  # the heartbeat saves too
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
            if process is not None:  # what it did so far, read again, for its summaries
                # (What the worker before it summarised is not known: its newest lines
                # are said again, and the console keeps each warning once.)
                output = OutputLog()
                process.follow(Path(h.log_path), output, None, 0, stream_format(h.harness))
                self.pump.outputs[h.uid] = output
            with self._lock:
                self.agents[h.uid] = (h, process)
            self._log(f"worker {self.name}: {h.gap_id} ({h.key}) pid {h.pid} "
                      + ("re-attached" if process else "ended while the worker was down"))

