"""The engine every front end drives: dispatch table, monitor thread, kills, retries.

It owns the dispatch table and runs ``decide_tick`` for every active dispatch
on a monitor thread: one PR poll per tick for all branches, plus an immediate
re-evaluation whenever an agent process exits. Kills run on their own thread
(SIGTERM to the whole group, grace, SIGKILL), so the grace period never holds
up the other agents. Reflections are handed to a queue that retries failures.
Everything it learns is reported to subscribers as events.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chump_tui import watchdog
from chump_tui.activity import Activity
from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog, read_log
from chump_tui.agent_streams.events import AgentEvent, PlainLine
from chump_tui.backlog import Gap, done_ids, unusable_ids
from chump_tui.dispatch import DispatchHandle, dispatch_gap_with
from chump_tui.dispatch_record import Dispatch
from chump_tui.errors import DispatchError
from chump_tui.events import DispatchChanged, EngineEvent, GitHubPolled, Notice, OutputLine
from chump_tui.harness import harness_named, stream_format
from chump_tui.leftovers import Leftover
from chump_tui.leftovers import scan as scan_leftovers
from chump_tui.log_lines import redact
from chump_tui.monitor import (
    DEFAULT_KILL_GRACE_S,
    DEFAULT_TICK_S,
    DispatchOutcome,
    Done,
    KeepGoing,
    KillThenDone,
    MarkStalled,
    decide_tick,
    soft_deadline_seconds,
)
from chump_tui.outside_text import one_line
from chump_tui.paths import dispatch_paths, slug, unsafe_id_reason
from chump_tui.picker import pickable_gaps
from chump_tui.pr_providers import PrProvider
from chump_tui.reflection_queue import ReflectionQueue
from chump_tui.reflections import DispatchReflection, ReflectionWriter
from chump_tui.session_store import SessionStore
from chump_tui.spawners import Spawner, SpawnResult
from chump_tui.watchdog import (
    DEFAULT_FIRST_OUTPUT_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    BusyProbe,
    Kill,
    Quiet,
)

Listener = Callable[[EngineEvent], None]

ENDED_TAIL_LINES = 20
"""Output lines kept in memory for an attempt that is over and reflected."""

KEEP_OUTPUT_OF_ENDED = 100
"""Reflected attempts that keep even those lines; older ones keep only their row (their log
files keep everything): memory stays flat over hours of continuous mode."""

FAILED_STILL_RUNNING_S = 15.0
"""An agent whose harness reported its run failed, and that neither exits nor does anything
more for this long, is stopped (some CLIs hang after a failed turn)."""

EVALUATE_EVERY_S = 1.0
"""The monitor thread decides at least this often (deadlines, watchdogs, exits)."""


@dataclass
class EngineConfig:
    base_ref: str = "origin/main"
    max_parallel: int = 2
    tick_s: float = DEFAULT_TICK_S
    kill_grace_s: float = DEFAULT_KILL_GRACE_S
    soft_deadline_s: float | None = None  # overrides the effort table
    log_dir: Path | None = None
    environ: Mapping[str, str] | None = None  # None: no depth check (test spawners)
    continuous: bool = False
    first_output_timeout_s: float = DEFAULT_FIRST_OUTPUT_TIMEOUT_S  # 0: off
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S  # 0: off
    include_shipped: bool = False  # gaps whose branch has a merged PR are pickable too


@dataclass
class _Live:
    """Engine-private companions of a Dispatch row."""

    record: Dispatch
    output: OutputLog
    process: AgentProcess | None = None
    kill_thread: threading.Thread | None = None
    # Set by the exit watcher once the process ended AND its output is drained,
    # so the reflection sees the agent's last lines.
    exit_seen: int | None = None
    busy_at: float | None = None  # when its descendants were last seen using CPU


_NOTHING_KEPT = OutputLog()
"""The output of every long-finished attempt: nothing (its log file keeps it all)."""


class Engine:
    def __init__(
        self,
        repo_root: Path,
        spawner: Spawner,
        provider: PrProvider,
        writer: ReflectionWriter,
        config: EngineConfig | None = None,
        backlog: Iterable[Gap] = (),
        clock: Callable[[], float] = time.time,
        spawner_for_retry: Spawner | None = None,
        store: SessionStore | None = None,
    ) -> None:
        self.repo_root = repo_root
        self.spawner = spawner
        self.spawner_for_retry = spawner_for_retry or spawner
        self.provider = provider
        self.writer = writer
        self.config = config or EngineConfig()
        self.clock = clock
        self.backlog: list[Gap] = list(backlog)
        self.store = store
        self.log_dir = self.config.log_dir or Path(tempfile.mkdtemp(prefix="chump-tui-logs-"))
        self.state_error: str | None = None
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._live: dict[str, _Live] = {}
        self._order: list[str] = []
        self._listeners: list[Listener] = []
        self._wake = threading.Event()
        self._poll_wake = threading.Event()
        self._poller: threading.Thread | None = None
        self._busy = BusyProbe()
        self._stop = threading.Event()
        self._stopping = threading.Event()  # stop_all ran: no new agent may start
        self._thread: threading.Thread | None = None
        self._next_poll_mono = 0.0
        self._poll_requested = True
        self.last_github_error: str | None = None
        self.gh_polls = 0
        self._launchers: list[threading.Thread] = []
        self._reflected: collections.deque[str] = collections.deque()
        self._queued: list[Gap] = []  # waiting for a free slot, in order
        self.leftovers: dict[str, Leftover] = {}  # branches earlier runs left, by gap id
        self.on_close: list[Callable[[], None]] = []  # after the engine's own threads end
        self.held_elsewhere: dict[str, str] = {}  # gap id -> who claimed it (a fleet's claims)
        self.unusable = unusable_ids(self.backlog)
        self.reflections = ReflectionQueue(writer, self._reflection_written,
                                           self._reflection_failed)

    # ------------------------------------------------------------------ events
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: EngineEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:  # a broken listener must not stop the engine
                if not isinstance(event, Notice):
                    self._emit(Notice("error", f"listener failed: {exc!r}"))

    def _changed(self, live: _Live, why: str, save: bool = True) -> None:
        if save:
            self._save_state(live.record.key)
        self._emit(DispatchChanged(dataclasses.replace(live.record), why))  # type: ignore[arg-type]

    def _save_state(self, changed: str | set[str]) -> None:
        """Persist the whole table (caller holds the lock); a failure is reported, not fatal.

        ``changed`` names the row (or rows) that changed: the store re-encodes only those.
        """
        if self.store is None:
            return
        try:
            self.store.save([self._live[k].record for k in self._order], changed)
        except OSError as exc:
            message = f"cannot save {self.store.state_path}: {exc.strerror or exc}"
            if message != self.state_error:
                self.state_error = message
                self._emit(Notice("error", message))
            return
        self.state_error = None

    # ------------------------------------------------------------------ queries
    def snapshot(self) -> list[Dispatch]:
        with self._lock:
            return [dataclasses.replace(self._live[k].record) for k in self._order]

    def get(self, key: str) -> Dispatch | None:
        with self._lock:
            live = self._live.get(key)
            return dataclasses.replace(live.record) if live else None

    # The per-key reads the console makes ten times a second take no engine lock: the
    # engine holds it while it saves the table (an fsync), and rows are only ever added
    # to _live, so a lookup without it is safe; OutputLog has a lock of its own.
    def output_tail(self, key: str, n: int = 400) -> list[str]:
        live = self._live.get(key)
        return live.output.tail(n) if live else []

    def output_lines_seen(self, key: str) -> int:
        live = self._live.get(key)
        return live.output.lines_seen if live else 0

    def activity(self, key: str) -> Activity | None:
        """What the agent of ``key`` is doing (a copy)."""
        live = self._live.get(key)
        return live.output.activity() if live else None

    def watchdog_state(self, key: str, now: float | None = None) -> Quiet | Kill | None:
        """The watchdogs' view of one running agent (the card's QUIET badge)."""
        live = self._live.get(key)
        if live is None or live.record.phase not in ("running", "stalled") \
                or live.process is None or live.exit_seen is not None:
            return None
        busy_at = live.busy_at
        started = live.record.started_at
        act = live.output.activity()
        return watchdog.check(started, act.first_event_at, act.last_event_at,
                              self.clock() if now is None else now,
                              self.config.first_output_timeout_s, self.config.idle_timeout_s,
                              busy_at)

    def running_count(self) -> int:
        """Active dispatches whose agent still runs (one that exited waits only for a PR)."""
        with self._lock:
            return sum(1 for lv in self._live.values()
                       if lv.record.active and not lv.record.waiting_for_pr)

    def force_kill(self, key: str) -> bool:
        """SIGKILL an agent being killed now, instead of waiting out its grace."""
        with self._lock:
            live = self._live.get(key)
            if live is None or live.record.phase != "killing" or live.process is None:
                return False
            process = live.process
        process.kill_now()
        return True

    def active_count(self) -> int:
        with self._lock:
            return sum(1 for lv in self._live.values() if lv.record.active)

    def next_poll_in_s(self) -> float:
        return max(0.0, self._next_poll_mono - time.monotonic())

    def dispatched_gap_ids(self) -> set[str]:
        with self._lock:
            return {lv.record.gap_id for lv in self._live.values()}

    def restore(self, record: Dispatch, output: Iterable[str | AgentEvent] = (),
                process: AgentProcess | None = None) -> None:
        """Put a dispatch known from elsewhere (the session file, a test) into the table.

        ``output`` is what it printed already (lines, or events of its harness). An active
        record with a live ``process`` is watched again (its log file is re-read from the
        top, then followed); an active record without one is judged by its PR and
        deadlines as if its agent had exited cleanly.
        """
        live = _Live(dataclasses.replace(record), OutputLog(self.clock), process=process)
        key = record.key
        events = [PlainLine(item) if isinstance(item, str) else item for item in output]
        if events:
            live.output.record(events)
        log_path = Path(record.log_path) if record.log_path else None
        fmt = stream_format(record.harness)
        if process is not None and log_path is not None:
            process.follow(log_path, live.output, self._line_sink(key), fmt=fmt)
        elif log_path is not None and log_path.exists():
            read_log(log_path, live.output, fmt)
        with self._lock:
            self._live[key] = live
            if key not in self._order:
                self._order.append(key)
            if record.active:
                if process is not None:
                    self._watch_exit(live, process)
                elif record.phase in ("running", "stalled"):
                    live.exit_seen = record.exit_code if record.exit_code is not None else 0
            self._changed(live, "restored")
        self._request_poll()
        self._wake.set()

    def resume(self, records: Iterable[Dispatch]) -> list[str]:
        """Take over a saved session: re-attach live agents, finish what ended unwatched.

        Returns one note per decision worth telling the operator, the first a summary.
        """
        notes: list[str] = []
        reattached = gone = 0
        resume_dispatch = getattr(self.spawner, "resume_dispatch", None)
        unanswered: list[tuple[str, Callable[[OutputLog, LineCallback], SpawnResult]]] = []
        for rec in records:
            if rec.phase == "dispatching" and rec.remote and resume_dispatch is not None:
                # Its request went out to the fleet: a host may have started it since.
                unanswered.append((rec.key, resume_dispatch(rec)))
                notes.append(f"{rec.key}: was being dispatched when the console stopped; "
                             "waiting for the fleet's answer")
            elif rec.phase == "dispatching":
                rec.phase = "spawn_failed"
                rec.error = "console stopped during dispatch (check the worktree)"
                rec.ended_at = rec.ended_at or self.clock()
                notes.append(f"{rec.key}: was being dispatched when the console stopped")
            process = None
            if rec.phase in ("running", "stalled", "killing") and rec.pid is not None:
                reattach = getattr(self.spawner, "reattach", None)
                if rec.remote and reattach is not None:  # a fleet agent: its host says
                    process = reattach(rec)
                elif rec.process_start is not None:
                    process = AgentProcess.attach(rec.pid, rec.process_start, rec.log_path)
                notes.append(f"{rec.key}: pid {rec.pid} "
                             + ("re-attached" if process else "is gone; judged by its PR"))
                reattached += process is not None
                gone += process is None
            self.restore(rec, process=process)
            with self._lock:
                live = self._live[rec.key]
                if rec.phase == "killing":
                    if process is not None:
                        grace = max(0.0, (rec.kill_deadline or 0) - self.clock())
                        live.record.phase = "running"
                        self._start_kill(live, rec.kill_reason or "killed", grace)
                    else:
                        self._finish(live, DispatchOutcome.killed(rec.kill_reason or "killed"))
                elif rec.outcome is not None and not rec.reflection_written:
                    self._queue_reflection(live, rec.outcome, 1)
                    notes.append(f"{rec.key}: reflection not written yet; writing it now")
        for key, wait in unanswered:  # each on a thread: running once its host answers
            threading.Thread(target=self._follow, name=f"resumed-dispatch-{key}", daemon=True,
                             args=(self._live[key], wait,
                                   "started by its host while the console was down")).start()
        if reattached or gone:
            notes.insert(0, f"re-attached {reattached} agent(s) still running from the console "
                            f"that closed" + (f"; {gone} ended while nobody watched" if gone
                                              else ""))
        return notes

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, gaps: Iterable[Gap], queue: bool = False) -> list[Dispatch]:
        """Run the dispatch steps for each gap in turn (blocking: call off the UI thread).

        A gap this session already dispatched is retried as its next attempt in the
        same worktree, or skipped while an attempt is active or has shipped. An id the
        backlog gives twice (or that shares a worktree) is never dispatched. ``queue``:
        only as many as max-parallel allows start now; the rest start as slots free.
        """
        gaps = list(gaps)
        if queue:
            with self._lock:
                slots = max(0, self.config.max_parallel - self.active_count())
                waiting = {g.id for g in self._queued}
                self._queued += [g for g in gaps[slots:] if g.id not in waiting]
            gaps = gaps[:slots]
        out: list[Dispatch] = []
        for gap in gaps:
            if self._stopping.is_set():
                break
            if gap.id in self.unusable:
                self._emit(Notice("warning", f"{gap.id} is not dispatched: "
                                             f"{self.unusable[gap.id]}"))
                continue
            with self._lock:  # check and reserve at once: continuous refills race us
                previous = [lv for lv in self._live.values() if lv.record.gap_id == gap.id]
                left = self.leftovers.get(gap.id)
                earlier = [left.pr.number] if left is not None and left.pr is not None \
                    and left.pr.state != "OPEN" else []  # an earlier run's PR: not this one's
                live = None if previous else self._reserve(gap, 1, earlier)
            if live is None:
                latest = max(previous, key=lambda lv: lv.record.attempt)
                retried = self.retry(latest.record.key)
                if retried is not None:
                    out.append(retried)
                continue
            self._launch(live, self.spawner)
            out.append(dataclasses.replace(live.record))
        return out

    def queued(self) -> list[str]:
        """Ids waiting for a free slot (a selection bigger than max-parallel). No lock: the
        console asks ten times a second, and copying a list is atomic."""
        return [g.id for g in list(self._queued)]

    def _reserve(self, gap: Gap, attempt: int, stale_prs: Iterable[int] = ()) -> _Live:
        # An id that cannot be a path never becomes one, not even on a failed row.
        worktree, branch = (dispatch_paths(self.repo_root, gap.id)
                            if unsafe_id_reason(gap.id) is None else ("", ""))
        soft = self.config.soft_deadline_s or soft_deadline_seconds(gap.effort)
        safe = unsafe_id_reason(gap.id) is None

        def log_of(n: int) -> Path:
            return self.log_dir / f"{slug(gap.id) if safe else 'unsafe-id'}-attempt{n}.log"

        def earlier_log(n: int) -> bool:  # a regular file: an earlier session's attempt
            path = log_of(n)  # (a planted link is not skipped: the spawn refuses it)
            return os.path.isfile(path) and not os.path.islink(path)

        with self._lock:
            # A key is never reused, nor a log file: attempts go on counting from earlier
            # sessions' logs, so two sessions never write into one file.
            while f"{gap.id}#{attempt}" in self._live or earlier_log(attempt):
                attempt += 1
        key = f"{gap.id}#{attempt}"
        log_path = str(log_of(attempt))
        record = Dispatch(
            key=key, gap_id=gap.id, title=gap.title, priority=gap.priority, effort=gap.effort,
            branch=branch, worktree=str(worktree), attempt=attempt, started_at=self.clock(),
            soft_deadline_s=soft, log_path=log_path,
        )
        record.stale_prs = sorted(set(stale_prs))
        live = _Live(record, OutputLog(self.clock))
        with self._lock:
            self._live[key] = live
            self._order.append(key)
            self._changed(live, "dispatching")
        return live

    def _line_sink(self, key: str) -> LineCallback:
        """What a row's log follower calls with new lines: an OutputLine event."""
        return lambda lines: self._emit(OutputLine(key, tuple(lines)))

    def _launch(self, live: _Live, spawner: Spawner) -> None:
        gap = self._gap_for(live.record)
        on_line = self._line_sink(live.record.key)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)  # the session checked its parents
            handle = dispatch_gap_with(
                spawner, gap, self.repo_root, self.config.base_ref, Path(live.record.log_path),
                live.output, on_line,
                environ=self.config.environ, clock=self.clock, stopping=self._stopping.is_set,
            )
        except Exception as exc:  # any failure is this gap's spawn failure, never a lost row
            self._spawn_failed(live, exc)
            return
        with self._lock:
            rec = live.record
            rec.started_at = handle.started_at
            rec.note = handle.claim_note or ""
            self._attach_handle(live, handle)
            self._changed(live, "dispatched")
        self._request_poll()

    def _spawn_failed(self, live: _Live, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, DispatchError) else \
            f"dispatching {live.record.gap_id}: {type(exc).__name__}: {exc}"
        with self._lock:
            live.record.phase = "spawn_failed"
            live.record.error = redact(error)
            live.record.ended_at = self.clock()
            self._changed(live, "spawn_failed")
            self._idle.notify_all()
        self._refill_soon()

    def note_request(self, log_path: Path, remote: str) -> None:
        """A spawner's request for the row dispatching into ``log_path`` is about to go out
        (``remote``: how to find its answer); saved first, so a console killed while it
        waits resumes the wait instead of losing the agent."""
        with self._lock:
            for live in self._live.values():
                rec = live.record
                if rec.phase == "dispatching" and rec.log_path == str(log_path):
                    rec.remote = remote
                    self._changed(live, "requested")
                    return

    def _follow(self, live: _Live, start: Callable[[OutputLog, LineCallback], SpawnResult],
                note: str) -> bool:
        """The row runs the agent ``start`` hands over (an agent started elsewhere: its host
        answered a resumed dispatch, or a lost one came back); a spawn failure if it raises."""
        try:
            handle = start(live.output, self._line_sink(live.record.key))
        except Exception as exc:  # this row says why; the engine goes on
            self._spawn_failed(live, exc)
            return False
        with self._lock:
            live.record.note = note
            self._attach_handle(live, handle)
            self._changed(live, "dispatched")
            self._idle.notify_all()
        return True

    def _attach_handle(self, live: _Live, handle: SpawnResult | DispatchHandle) -> None:
        """The row runs the process ``handle`` names (caller holds the lock)."""
        rec = live.record
        rec.phase = "running"
        rec.backend = handle.backend
        rec.harness = handle.harness
        rec.host, rec.remote = handle.host, handle.remote
        live.process = handle.process
        if handle.process is not None:
            rec.pid = handle.process.pid
            rec.process_start = handle.process.start_time
            self._watch_exit(live, handle.process)

    def _gap_for(self, record: Dispatch) -> Gap:
        for gap in self.backlog:
            if gap.id == record.gap_id:
                return gap
        return Gap(id=record.gap_id, title=record.title, priority=record.priority,
                   effort=record.effort, status="open")

    def _watch_exit(self, live: _Live, process: AgentProcess) -> None:
        def wait_then_wake() -> None:
            code = process.wait()
            process.join_output(2.0)
            with self._lock:
                live.exit_seen = code if code is not None else 0
                # Its last report (turns, cost) is in now: onto the row whatever comes next
                # (an outcome, or waiting for its PR), and its run's length stops growing.
                live.record.exited_at = live.record.exited_at or self.clock()
                self._sync_activity(live)
                self._changed(live, "activity")
                self._idle.notify_all()
            self._wake.set()

        threading.Thread(target=wait_then_wake, name=f"exit-{process.pid}", daemon=True).start()

    def settle(self, timeout_s: float) -> bool:
        """Wait (bounded) for agents whose outcome came before their process ended."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while any(lv.process is not None and lv.exit_seen is None
                      and lv.record.phase == "ended" for lv in self._live.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    # ---------------------------------------------------------------- adopt
    def adopt(self, lost_key: str,
              start: Callable[[OutputLog, LineCallback], SpawnResult]) -> str | None:
        """A lost attempt's agent turned out alive (its fleet host came back): follow it
        again as the gap's next attempt, with the same log and deadlines, ``start`` handing
        it over. The lost attempt keeps its recorded outcome.

        None (nothing done) unless the lost attempt is still its gap's latest and the
        console is not stopping: a gap dispatched again meanwhile runs elsewhere, and the
        returning agent is to be stopped instead.
        """
        with self._lock:
            lost = self._live.get(lost_key)
            if lost is None or self._stopping.is_set() or not lost.record.lost:
                return None
            gap_id = lost.record.gap_id
            if any(lv.record.gap_id == gap_id and lv.record.attempt > lost.record.attempt
                   for lv in self._live.values()) or any(g.id == gap_id for g in self._queued):
                return None
            live = self._reserve(self._gap_for(lost.record), lost.record.attempt + 1,
                                 lost.record.stale_prs)
            live.record.log_path = lost.record.log_path
            live.record.started_at = lost.record.started_at
        note = f"re-attached: {lost_key} was lost while its host was silent"
        return live.record.key if self._follow(live, start, note) else None

    # ------------------------------------------------------------ retry & kill
    def retry(self, key: str) -> Dispatch | None:
        """Dispatch an ended, unshipped attempt again as attempt N+1 (blocking)."""
        with self._lock:
            old = self._live.get(key)
            if old is None or not old.record.retryable or self._stopping.is_set():
                return None
            latest = max(lv.record.attempt for lv in self._live.values()
                         if lv.record.gap_id == old.record.gap_id)
            if old.record.waiting_for_pr:  # exited without a PR: no need to wait it out
                self._finish(old, DispatchOutcome.stalled())
            if any(lv.record.active for lv in self._live.values()
                   if lv.record.gap_id == old.record.gap_id):
                return None
            stale = set(old.record.stale_prs)
            if old.record.pr is not None and old.record.pr.state != "OPEN":
                stale.add(old.record.pr.number)
            live = self._reserve(self._gap_for(old.record), latest + 1, stale)
        self._launch(live, self.spawner_for_retry)
        return dataclasses.replace(live.record)

    def kill(self, key: str, reason: str = "killed by operator") -> bool:
        """Start killing one agent; returns at once (the grace runs on its own thread)."""
        with self._lock:
            live = self._live.get(key)
            if live is None or live.record.phase not in ("running", "stalled"):
                return False
            self._start_kill(live, reason, self.config.kill_grace_s)
            return True

    def _start_kill(self, live: _Live, reason: str, grace_s: float) -> None:
        rec = live.record
        process = live.process
        if process is None or not process.group_alive():
            self._finish(live, DispatchOutcome.killed(reason))
            return
        rec.phase = "killing"
        rec.kill_reason = reason
        rec.kill_deadline = self.clock() + grace_s
        self._changed(live, "killing")

        def run() -> None:
            # An agent CLI is stopped at once (no next request, no next tool); the grace is
            # for the tools it started.
            code = process.terminate_group(grace_s, stop_agent_first=bool(rec.harness))
            with self._lock:
                rec.exit_code = code
                self._finish(live, DispatchOutcome.killed(reason))

        live.kill_thread = threading.Thread(target=run, name=f"kill-{rec.pid}", daemon=True)
        live.kill_thread.start()

    def stop_all(self, reason: str = "interrupted", grace_s: float | None = None,
                 remove_worktrees: bool = False) -> None:
        """Kill every active agent in parallel and wait for all of them (blocking).

        A dispatch still in its steps (a slow claim script) is ended first: its step's
        process group is killed and it never starts its agent.
        """
        self.config.continuous = False
        self._stopping.set()
        with self._lock:
            self._queued.clear()
        for spawner in {id(self.spawner): self.spawner,
                        id(self.spawner_for_retry): self.spawner_for_retry}.values():
            cancel = getattr(spawner, "cancel", None)  # test spawners have nothing to end
            if cancel is not None:
                cancel()
        grace = self.config.kill_grace_s if grace_s is None else grace_s
        with self._idle:  # dispatches in their steps end promptly now
            deadline = time.monotonic() + 10
            while any(lv.record.phase == "dispatching" for lv in self._live.values()) \
                    and time.monotonic() < deadline:
                self._idle.wait(0.05)
        with self._lock:
            for live in self._live.values():
                if live.record.phase in ("running", "stalled"):
                    self._start_kill(live, reason, grace)
                elif live.record.phase == "killing" and live.kill_thread is None:
                    self._finish(live, DispatchOutcome.killed(reason))
            kill_threads = [lv.kill_thread for lv in self._live.values() if lv.kill_thread]
        for launcher in list(self._launchers):
            launcher.join(grace + 10)
        for thread in kill_threads:
            thread.join(grace + 10)
        with self._lock:
            # Anything a launcher finished starting after we looked.
            late = [lv for lv in self._live.values() if lv.record.phase in ("running", "stalled")]
            for live in late:
                self._start_kill(live, reason, grace)
            late_threads = [lv.kill_thread for lv in late if lv.kill_thread]
        for thread in late_threads:
            thread.join(grace + 10)
        if remove_worktrees:
            for rec in self.snapshot():
                self.remove_worktree(rec.key)

    def remove_worktree(self, key: str) -> str | None:
        """``git worktree remove --force`` for an ended dispatch; returns an error or None."""
        with self._lock:
            live = self._live.get(key)
            if live is None:
                return "no such dispatch"
            rec = dataclasses.replace(live.record)
            # Every attempt of a gap shares its worktree: a retry may be working in it.
            busy = [lv.record for lv in self._live.values()
                    if lv.record.active and lv.record.gap_id == rec.gap_id]
        if busy:
            return (f"attempt #{busy[0].attempt} of {rec.gap_id} is {busy[0].label()} in "
                    "this worktree")
        if not rec.worktree or Path(rec.worktree) != dispatch_paths(self.repo_root,
                                                                    rec.gap_id)[0]:
            return "no worktree of ours to remove"
        if not Path(rec.worktree).exists():
            return None
        try:
            done = subprocess.run(
                ["git", "-C", str(self.repo_root), "worktree", "remove", "--force", rec.worktree],
                capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0:
            return done.stderr.decode("utf-8", errors="replace").strip() or "git failed"
        with self._lock:  # every attempt of the gap worked in it: their cards say so
            for live in self._live.values():
                if live.record.gap_id == rec.gap_id and not live.record.worktree_removed:
                    live.record.worktree_removed = True
                    self._changed(live, "worktree removed")
        return None

    # ------------------------------------------------------------- continuous
    def set_continuous(self, on: bool) -> None:
        self.config.continuous = on
        if self.store is not None:  # a read-only console of this session shows it too
            self.store.meta["continuous"] = on
            with self._lock:
                self._save_state(set())
        if on:
            self._refill_soon()

    def pickable_now(self, n: int) -> list[Gap]:
        with self._lock:
            done = done_ids(self.backlog) | {
                lv.record.gap_id for lv in self._live.values()
                if lv.record.outcome is not None and lv.record.outcome.kind == "shipped"
            } | {gid for gid, left in self.leftovers.items() if left.shipped}
            # A gap whose last attempt was lost with its host is free again (its claim too).
            latest: dict[str, Dispatch] = {}
            for lv in self._live.values():
                seen = latest.get(lv.record.gap_id)
                if seen is None or lv.record.attempt > seen.attempt:
                    latest[lv.record.gap_id] = lv.record
            taken = {gid for gid, rec in latest.items() if not rec.lost}
            blocked = {gid for gid, left in self.leftovers.items()
                       if left.reason(self.config.include_shipped)}
            blocked |= set(self.held_elsewhere)
        candidates = [g for g in self.backlog if g.id not in taken and g.id not in blocked]
        return pickable_gaps(candidates, n, done)

    def agent_for(self, gap_id: str) -> str:
        """Which agent a dispatch of ``gap_id`` starts (its harness, or the backend that is
        no harness); '' when the spawner does not say (test spawners)."""
        backend = getattr(self.spawner, "backend", "claude")
        if backend != "claude":
            return str(backend)
        chosen = getattr(self.spawner, "gap_harness", {}).get(gap_id)
        return str(chosen or getattr(self.spawner, "harness", ""))

    def hosts(self) -> list[tuple[str, int, int]] | None:
        """Where agents run, when that is a fleet: (host, free slots, slots); else None."""
        hosts = getattr(self.spawner, "hosts", None)
        return hosts() if hosts is not None else None

    def scan_leftovers(self) -> str | None:
        """Look for branches earlier runs left for the backlog's gaps (blocking: git, and one
        gh call when there are any). Returns GitHub's error when it could not be asked."""
        found, error = scan_leftovers(self.repo_root, self.backlog, lambda: self.provider)
        # A spawner that knows of claims held elsewhere (the fleet's chump_gaps) says whose.
        held_by = getattr(self.spawner, "held_elsewhere", None)
        held: dict[str, str] = held_by({g.id for g in self.backlog}) if held_by else {}
        with self._lock:
            self.leftovers = found
            self.held_elsewhere = held
        return error

    def _refill_soon(self) -> None:
        """Fill free slots: queued gaps first, then (continuous mode) the next pickable."""
        if self._stop.is_set() or self._stopping.is_set():
            return
        with self._lock:
            slots = self.config.max_parallel - self.running_count()
            if slots <= 0 or not (self._queued or self.config.continuous):
                return
            queued = self._queued[:slots]
            del self._queued[:slots]
            picked = (self.pickable_now(slots - len(queued)) if self.config.continuous
                      and slots > len(queued) else [])
            picked = [g for g in picked if g.id not in {q.id for q in queued}]
            lives = [self._reserve(g, 1) for g in picked]  # reserved now: nobody races them
        if not lives and not queued:
            return

        def launch_all() -> None:
            self.dispatch(queued)
            for live in lives:
                self._launch(live, self.spawner)

        thread = threading.Thread(target=launch_all, name="refill-dispatch", daemon=True)
        self._launchers = [t for t in self._launchers if t.is_alive()] + [thread]
        thread.start()

    # ----------------------------------------------------------- monitor loop
    def start(self) -> None:
        if self._thread is None:
            # Two threads: a hanging `gh` holds up only the poller, never exits, deadlines,
            # watchdogs or kills, which the monitor thread decides at least every second.
            self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
            self._poller = threading.Thread(target=self._poll_loop, name="pr-poller",
                                            daemon=True)
            self._thread.start()
            self._poller.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._poll_wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._poller is not None:
            self._poller.join(2)  # a poll stuck in `gh` ends with its own timeout
        self.reflections.flush(10)
        self.reflections.close()
        for hook in self.on_close:
            hook()

    def wait_until_idle(self, timeout_s: float | None = None) -> bool:
        """Block until no dispatch is active; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while any(lv.record.active for lv in self._live.values()) or any(
                    t.is_alive() for t in self._launchers):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.1 if left is None else min(left, 0.1))
        return True

    def poll_now(self) -> None:
        self._request_poll()

    def _request_poll(self) -> None:
        self._poll_requested = True
        self._poll_wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before deciding: a wake-up meanwhile is not lost
            self._evaluate()
            self._check_watchdogs()
            self._wake.wait(EVALUATE_EVERY_S)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._poll_wake.clear()
            if self._poll_requested or time.monotonic() >= self._next_poll_mono:
                self._poll_requested = False
                self._poll_github()
                self._next_poll_mono = time.monotonic() + self.config.tick_s
                self._wake.set()  # decide with the fresh PR states
            self._poll_wake.wait(max(0.0, self._next_poll_mono - time.monotonic()))

    def _poll_github(self) -> None:
        with self._lock:
            branches = sorted({lv.record.branch for lv in self._live.values()
                               if lv.record.phase in ("running", "stalled")})
        if not branches:
            return
        self.gh_polls += 1
        try:
            answer = self.provider.poll(branches)
        except Exception as exc:  # GitHub trouble is reported and retried, never fatal
            self.last_github_error = redact(str(exc)) or type(exc).__name__
            self._emit(GitHubPolled(False, self.last_github_error, self.config.tick_s))
            return
        self.last_github_error = None
        with self._lock:
            for live in self._live.values():
                rec = live.record
                if rec.phase not in ("running", "stalled") or rec.branch not in answer:
                    continue
                pr = answer[rec.branch]
                if pr is not None and (pr.number in rec.stale_prs
                                       or pr.opened_before(rec.started_at)):
                    pr = None  # an earlier attempt's PR: never this one's outcome
                if pr != rec.pr:
                    rec.pr = pr
                    self._changed(live, "pr")
        self._emit(GitHubPolled(True, None, self.config.tick_s))

    def _evaluate(self) -> None:
        now = self.clock()
        with self._lock:
            in_flight = sum(1 for lv in self._live.values() if lv.record.active)
            for live in list(self._live.values()):
                rec = live.record
                if rec.phase not in ("running", "stalled"):
                    continue
                code = live.exit_seen
                if code is not None and rec.exit_code is None:
                    rec.exit_code = code
                    if code == 0:
                        self._changed(live, "exited")
                running = live.process is not None and code is None
                decision = decide_tick(rec.pr, rec.started_at, now, rec.soft_deadline_s,
                                       code, running)
                if isinstance(decision, KeepGoing):
                    if rec.phase == "stalled" and rec.pr is not None:
                        rec.phase = "running"
                        self._changed(live, "pr")
                elif isinstance(decision, MarkStalled):
                    if rec.phase != "stalled":
                        rec.phase = "stalled"
                        self._changed(live, "stalled")
                elif isinstance(decision, Done):
                    outcome = decision.outcome
                    lost = getattr(live.process, "lost", "")  # a fleet host went silent
                    if lost:
                        outcome = DispatchOutcome.killed(lost)
                    elif outcome.kind == "killed" and code not in (None, 0):
                        rec.agent_error = self._exit_detail(live)
                    self._finish(live, outcome, in_flight)
                elif isinstance(decision, KillThenDone):
                    self._start_kill(live, decision.reason, self.config.kill_grace_s)

    def _check_watchdogs(self) -> None:
        """Kill agents that went quiet, sparing those whose descendants are busy; copy a
        finished run's cost and turns into its row as soon as the agent reports them."""
        now = self.clock()
        with self._lock:
            watched = [lv for lv in self._live.values()
                       if lv.record.phase in ("running", "stalled") and lv.process is not None
                       and lv.exit_seen is None]
        synced: list[_Live] = []
        for live in watched:
            act = live.output.activity()
            if self._activity_differs(live.record, act):
                synced.append(live)
                with self._lock:
                    self._sync_activity(live, act)
            assert live.process is not None
            verdict = watchdog.check(live.record.started_at, act.first_event_at,
                                     act.last_event_at, now, self.config.first_output_timeout_s,
                                     self.config.idle_timeout_s, live.busy_at)
            if act.fatal_at is not None and now - max(act.fatal_at, act.last_event_at or 0) \
                    >= FAILED_STILL_RUNNING_S:  # its harness said the run failed: it is over
                verdict = Kill(f"the agent failed and did not exit: {redact(act.fatal_error)}")
            if verdict is None:
                self._busy.forget(live.process.pid)
                continue
            if live.process.busy(self._busy):  # a build beneath it: working, not idle
                live.busy_at = now
                continue
            if isinstance(verdict, Kill):
                reason = verdict.reason
                if act.retries:  # what it saw meanwhile: the model API failing, not silence
                    reason += (f" (waiting on the model API: {act.retries} retries, last "
                               f"{act.last_retry})")
                with self._lock:
                    if live.record.phase in ("running", "stalled"):
                        self._start_kill(live, reason, self.config.kill_grace_s)
        if synced:  # every row whose numbers moved, in one save (not one fsync each)
            with self._lock:
                self._save_state({lv.record.key for lv in synced})
                for live in synced:
                    self._changed(live, "activity", save=False)

    @staticmethod
    def _activity_differs(rec: Dispatch, act: Activity) -> bool:
        """Whether the row's copy of the agent's numbers is behind its activity."""
        if act.events == 0 and act.finished is None:
            return False
        return (rec.turns, rec.tokens_in, rec.tokens_out, rec.cost_usd, rec.tool_errors,
                rec.model) != (act.turns, act.tokens_in, act.tokens_out, act.cost_usd,
                               act.tool_errors, act.model)

    def _sync_activity(self, live: _Live, act: Activity | None = None) -> None:
        """Turns, tokens, cost, tool errors and the agent's own error onto the row (kept in
        state.json): whatever the attempt's outcome, the totals add every attempt."""
        act = act or live.output.activity()
        rec = live.record
        if act.events == 0 and act.finished is None:
            return
        rec.turns = act.turns
        rec.tokens_in, rec.tokens_out = act.tokens_in, act.tokens_out
        rec.cost_usd = act.cost_usd
        rec.tool_errors = act.tool_errors
        rec.model = act.model
        if act.fatal_error:
            rec.agent_error = redact(act.fatal_error)

    def _exit_detail(self, live: _Live) -> str:
        """Why an agent exited non-zero, as it or its harness said (the outcome keeps the
        reference's ``exit code N``; this is shown after it)."""
        act = live.output.activity()
        if act.fatal_error:
            return redact(act.fatal_error)
        tail = live.output.tail(20)
        harness = harness_named(live.record.harness)
        hint = harness.hint_for(tail) if harness is not None else None
        if hint:
            return hint
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        return one_line(last, 200)

    def _finish(self, live: _Live, outcome: DispatchOutcome, in_flight: int | None = None) -> None:
        """Record a terminal outcome once, queue its reflection, refill if continuous."""
        rec = live.record
        if rec.outcome is not None:
            return
        now = self.clock()
        if in_flight is None:
            in_flight = sum(1 for lv in self._live.values() if lv.record.active)
        self._sync_activity(live)
        rec.outcome = outcome
        rec.phase = "ended"
        rec.ended_at = now
        rec.kill_deadline = None
        # The outcome is on disk before its reflection may be written: a crash in
        # between leaves an unwritten reflection to retry, never a lost outcome.
        self._save_state(rec.key)
        self._queue_reflection(live, outcome, in_flight)
        # Refill before reporting the outcome, so a listener never sees a moment
        # with nothing active while continuous mode is about to dispatch more.
        self._refill_soon()
        self._changed(live, "outcome", save=False)
        self._idle.notify_all()

    def _queue_reflection(self, live: _Live, outcome: DispatchOutcome, in_flight: int) -> None:
        rec = live.record
        end = rec.ended_at if rec.ended_at is not None else self.clock()
        self.reflections.put(rec.key, DispatchReflection.build(
            rec.gap_id, rec.effort or "m", outcome, int(end - rec.started_at),
            in_flight - 1, rec.backend or "claude", live.output.signal_lines(), rec.uid))

    def _reflection_written(self, key: str) -> None:
        with self._lock:
            live = self._live.get(key)
            if live is not None:
                live.record.reflection_written = True
                live.output.compact(ENDED_TAIL_LINES)
                self._reflected.append(key)
                while len(self._reflected) > KEEP_OUTPUT_OF_ENDED:
                    old = self._live[self._reflected.popleft()]
                    if old.exit_seen is not None or old.process is None:
                        old.output = _NOTHING_KEPT  # its row keeps turns and cost
                        old.process = None
                self._changed(live, "reflected")

    def _reflection_failed(self, key: str, error: str) -> None:
        self._emit(Notice("warning", f"reflection for {key} not written yet ({error}); retrying"))



def default_log_dir(repo_root: Path) -> Path:
    return repo_root / "sessions" / "chump-tui" / "logs"
