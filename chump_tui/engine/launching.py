"""Starting agents: a row reserved in the table, the dispatch steps run (worktree, claim,
agent), the agent followed and its exit watched; a retry as the next attempt; an agent
started elsewhere followed as a row (a fleet host's answer, a lost agent come back).

A failure anywhere in a dispatch is that row's spawn failure, never a lost row. What
this part needs of the others comes through ``LaunchHooks``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog
from chump_tui.backlog import Gap
from chump_tui.dispatch import DispatchHandle, dispatch_gap_with
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.config import EngineConfig
from chump_tui.engine.outcomes import Outcomes
from chump_tui.engine.table import DispatchTable, Live
from chump_tui.errors import DispatchError, TakenElsewhere
from chump_tui.events import Notice, OutputLine
from chump_tui.log_lines import redact
from chump_tui.monitor import DispatchOutcome, soft_deadline_seconds
from chump_tui.paths import dispatch_paths, slug, unsafe_id_reason
from chump_tui.spawners import Spawner, SpawnResult

StartAgent = Callable[[OutputLog, LineCallback], SpawnResult]
"""Hands over an agent started elsewhere, following its output into the row's log."""

Launch = Callable[[Callable[[], None]], None]
"""Runs one row's dispatch steps: at once (the caller waits), or on a thread of its own (a
fleet's dispatch may wait long for a host: the others must not wait behind it)."""


def now(job: Callable[[], None]) -> None:
    job()


@dataclass(frozen=True)
class LaunchHooks:
    slot_freed: Callable[[], None]  # a dispatch failed: its slot is free again
    agent_started: Callable[[], None]  # an agent runs: ask GitHub about its branch soon
    agent_exited: Callable[[], None]  # an agent's process ended: decide its row now
    earlier_prs: Callable[[str], list[int]]  # PRs an earlier run left on a gap's branch
    queued: Callable[[], list[str]]  # gaps waiting for a free slot
    why_no_new_agent: Callable[[], str | None]  # the session's budget is spent
    output_seen: Callable[[Live], None]  # an agent wrote (its budget may be near)


class Launcher:
    def __init__(self, table: DispatchTable, config: EngineConfig, outcomes: Outcomes,
                 repo_root: Path, log_dir: Path, backlog: list[Gap],
                 unusable: dict[str, str], hooks: LaunchHooks) -> None:
        self.table = table
        self.config = config
        self.outcomes = outcomes
        self.repo_root = repo_root
        self.log_dir = log_dir
        self.backlog = backlog
        self.unusable = unusable
        self.hooks = hooks

    # ------------------------------------------------------------ dispatch
    def dispatch(self, gaps: Iterable[Gap], spawner: Spawner,
                 spawner_for_retry: Spawner, run: Launch = now) -> list[Dispatch]:
        """The dispatch steps for each gap in turn, each row reserved first and its steps
        run by ``run``. A gap this session already dispatched is retried as its next
        attempt, or skipped while one is active or has shipped; an id the backlog gives
        twice (or that shares a worktree) never runs."""
        out: list[Dispatch] = []
        # A fleet's row is first saved with its request, before anything happens for it
        # (a thousand gaps dispatched at once were a thousand more rewrites of a growing
        # session file); a local one before its worktree is made.
        remote = bool(getattr(spawner, "dispatches_in_parallel", False))
        for gap in gaps:
            if self.table.stopping.is_set():
                break
            paused = self.hooks.why_no_new_agent()
            if paused is not None:
                self.table.emit(Notice("warning", f"{gap.id} is not dispatched: {paused}"))
                break
            if gap.id in self.unusable:
                self.table.emit(Notice("warning", f"{gap.id} is not dispatched: "
                                                  f"{self.unusable[gap.id]}"))
                continue
            with self.table.lock:  # check and reserve at once: continuous refills race us
                previous = self.table.of_gap(gap.id)
                live = None if previous else self.reserve(
                    gap, 1, self.hooks.earlier_prs(gap.id), save=not remote)
            if live is None:
                latest = max(previous, key=lambda lv: lv.record.attempt)
                retried = self.retry(latest.record.key, spawner_for_retry, run)
                if retried is not None:
                    out.append(retried)
                continue
            run(functools.partial(self.launch, live, spawner))
            out.append(dataclasses.replace(live.record))
        return out

    def reserve(self, gap: Gap, attempt: int, stale_prs: Iterable[int] = (),
                save: bool = True) -> Live:
        """A new row for ``gap`` (attempt ``attempt`` or the next free one), in the table
        (saved unless the caller saves it with others)."""
        # An id that cannot be a path never becomes one, not even on a failed row.
        safe = unsafe_id_reason(gap.id) is None
        worktree, branch = dispatch_paths(self.repo_root, gap.id) if safe else ("", "")
        soft = self.config.soft_deadline_s or soft_deadline_seconds(gap.effort)

        def log_of(n: int) -> Path:
            return self.log_dir / f"{slug(gap.id) if safe else 'unsafe-id'}-attempt{n}.log"

        def earlier_log(n: int) -> bool:  # a regular file: an earlier session's attempt
            path = log_of(n)  # (a planted link is not skipped: the spawn refuses it)
            return os.path.isfile(path) and not os.path.islink(path)

        with self.table.lock:
            # A key is never reused, nor a log file: attempts go on counting from earlier
            # sessions' logs, so two sessions never write into one file.
            while f"{gap.id}#{attempt}" in self.table.rows or earlier_log(attempt):
                attempt += 1
            record = Dispatch(
                key=f"{gap.id}#{attempt}", gap_id=gap.id, title=gap.title,
                priority=gap.priority, effort=gap.effort, branch=branch,
                worktree=str(worktree), attempt=attempt, started_at=self.table.clock(),
                soft_deadline_s=soft, log_path=str(log_of(attempt)))
            record.stale_prs = sorted(set(stale_prs))
            live = Live(record, OutputLog(self.table.clock))
            self.table.add(live, "dispatching", save)
        return live

    def launch(self, live: Live, spawner: Spawner) -> None:
        """Run the dispatch steps for a reserved row (blocking)."""
        gap = self.gap_for(live.record)
        with self.table.lock:
            self.table.dispatching[live.record.log_path] = live
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)  # the session checked its parents
            handle = dispatch_gap_with(
                spawner, gap, self.repo_root, self.config.base_ref, Path(live.record.log_path),
                live.output, self.line_sink(live.record.key), environ=self.config.environ,
                clock=self.table.clock, stopping=self.table.stopping.is_set)
        except Exception as exc:  # any failure is this gap's spawn failure, never a lost row
            self.spawn_failed(live, exc)
            return
        finally:
            with self.table.lock:
                self.table.dispatching.pop(live.record.log_path, None)
        with self.table.lock:
            live.record.started_at = handle.started_at
            live.record.note = handle.claim_note or ""
            self.attach(live, handle)
            self.table.changed(live, "dispatched")
        self.hooks.agent_started()

    def spawn_failed(self, live: Live, exc: Exception) -> None:
        """The row's dispatch ended without an agent: a failure, or (``TakenElsewhere``)
        another session holding the gap, which is said as such and is no failure."""
        error = str(exc) if isinstance(exc, DispatchError) else \
            f"dispatching {live.record.gap_id}: {type(exc).__name__}: {exc}"
        with self.table.lock:
            live.record.phase = "spawn_failed"
            live.record.waiting = ""
            if isinstance(exc, TakenElsewhere):
                live.record.taken_by = redact(error)
            live.record.error = redact(error)
            live.record.ended_at = self.table.clock()
            self.table.changed(live, "spawn_failed")
            self.table.idle.notify_all()
        self.hooks.slot_freed()

    def retry(self, key: str, spawner: Spawner, run: Launch = now) -> Dispatch | None:
        """Dispatch an ended, unshipped attempt again as attempt N+1 (its steps run by
        ``run``)."""
        with self.table.lock:
            old = self.table.live(key)
            if old is None or not old.record.retryable or self.table.stopping.is_set():
                return None
            attempts = self.table.of_gap(old.record.gap_id)
            if old.record.waiting_for_pr:  # exited without a PR: no need to wait it out
                self.outcomes.finish(old, DispatchOutcome.stalled())
            if any(lv.record.active for lv in attempts):
                return None
            stale = set(old.record.stale_prs)
            if old.record.pr is not None and old.record.pr.state != "OPEN":
                stale.add(old.record.pr.number)
            latest = max(lv.record.attempt for lv in attempts)
            live = self.reserve(self.gap_for(old.record), latest + 1, stale)
        run(functools.partial(self.launch, live, spawner))
        return dataclasses.replace(live.record)

    def note_request(self, log_path: Path, remote: str) -> None:
        """A spawner's request for the row dispatching into ``log_path`` is about to go out
        (``remote``: how to find its answer); saved first, so a console killed while it
        waits resumes the wait instead of losing the agent."""
        with self.table.lock:
            live = self._dispatching_into(log_path)
            if live is not None:
                live.record.remote = remote
                self.table.changed(live, "requested")

    def note_waiting(self, log_path: Path, waiting: str) -> None:
        """What the row dispatching into ``log_path`` waits for now (a fleet host with a
        free slot, the broker); "" once its request goes out. Told on change; saved when
        it starts waiting (a console killed now dispatches it again when back), not at
        each change of what it waits for (a thousand rows waiting for hosts would rewrite
        the session file a thousand times a look)."""
        with self.table.lock:
            live = self._dispatching_into(log_path)
            if live is not None and live.record.waiting != waiting:
                starts = not live.record.waiting
                live.record.waiting = waiting
                self.table.changed(live, "waiting", save=starts)

    def _dispatching_into(self, log_path: Path) -> Live | None:
        """The row whose dispatch writes ``log_path`` (caller holds the lock): one being
        launched, else (a resumed session's) any row still dispatching."""
        live = self.table.dispatching.get(str(log_path))
        if live is not None and live.record.phase == "dispatching":
            return live
        return next((lv for lv in self.table.rows.values() if lv.record.phase == "dispatching"
                     and lv.record.log_path == str(log_path)), None)

    # ------------------------------------------------------------ agents started elsewhere
    def follow(self, live: Live, start: StartAgent, note: str) -> bool:
        """The row runs the agent ``start`` hands over (an agent started elsewhere: its host
        answered a resumed dispatch, or a lost one came back); a spawn failure if it raises."""
        try:
            handle = start(live.output, self.line_sink(live.record.key))
        except Exception as exc:  # this row says why; the engine goes on
            self.spawn_failed(live, exc)
            return False
        with self.table.lock:
            live.record.note = note
            self.attach(live, handle)
            self.table.changed(live, "dispatched")
            self.table.idle.notify_all()
        return True

    def adopt(self, lost_key: str, start: StartAgent) -> str | None:
        """A lost attempt's agent turned out alive (its fleet host came back): follow it
        again as the gap's next attempt, with the same log and deadlines, ``start`` handing
        it over. The lost attempt keeps its recorded outcome.

        None (nothing done) when the gap was dispatched again meanwhile (an attempt after
        the lost one that did not fail to start) or the console is stopping: the gap runs
        elsewhere, and the returning agent is to be stopped instead.
        """
        with self.table.lock:
            lost = self.table.live(lost_key)
            if lost is None or self.table.stopping.is_set() or not lost.record.lost:
                return None
            gap_id = lost.record.gap_id
            if any(lv.record.attempt > lost.record.attempt and not lv.record.failed_to_start
                   for lv in self.table.of_gap(gap_id)) or gap_id in self.hooks.queued():
                return None
            live = self.reserve(self.gap_for(lost.record), lost.record.attempt + 1,
                                lost.record.stale_prs)
            live.record.log_path = lost.record.log_path
            live.record.started_at = lost.record.started_at
        note = f"re-attached: {lost_key} was lost while its host was silent"
        return live.record.key if self.follow(live, start, note) else None

    # ------------------------------------------------------------ following
    def attach(self, live: Live, handle: SpawnResult | DispatchHandle) -> None:
        """The row runs the process ``handle`` names (caller holds the table's lock)."""
        rec = live.record
        rec.phase = "running"
        rec.backend = handle.backend
        rec.harness = handle.harness
        rec.host, rec.remote = handle.host, handle.remote
        live.process = handle.process
        if handle.process is not None:
            rec.pid = handle.process.pid
            rec.process_start = handle.process.start_time
            self.watch_exit(live, handle.process)

    def watch_exit(self, live: Live, process: AgentProcess) -> None:
        def wait_then_wake() -> None:
            code = process.wait()
            process.join_output(2.0)
            with self.table.lock:
                live.exit_seen = code if code is not None else 0
                # Its last report (turns, cost) is in now: onto the row whatever comes next
                # (an outcome, or waiting for its PR), and its run's length stops growing.
                live.record.exited_at = live.record.exited_at or self.table.clock()
                self.outcomes.sync_activity(live)
                self.table.changed(live, "activity")
                self.table.idle.notify_all()
            self.hooks.agent_exited()

        threading.Thread(target=wait_then_wake, name=f"exit-{process.pid}", daemon=True).start()

    def line_sink(self, key: str) -> LineCallback:
        """What a row's log follower calls with new lines: an OutputLine event."""
        def sink(lines: list[str]) -> None:
            self.table.emit(OutputLine(key, tuple(lines)))
            live = self.table.live(key)
            if live is not None:
                self.hooks.output_seen(live)

        return sink

    def gap_for(self, record: Dispatch) -> Gap:
        for gap in self.backlog:
            if gap.id == record.gap_id:
                return gap
        return Gap(id=record.gap_id, title=record.title, priority=record.priority,
                   effort=record.effort, status="open")
