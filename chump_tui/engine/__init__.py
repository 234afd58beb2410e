"""The engine every front end drives, and how its parts are wired.

::

    front end ──▶ Engine ─┬─ Refill ──────▶ Launcher ──▶ dispatch steps, agent process
    (console,             │  (queue,          (reserve, launch, follow, retry, adopt)
     plain,               │   continuous)         │ exit ──▶ MonitorLoop.decide_now
     self-test)           ├─ MonitorLoop ──▶ Outcomes.finish ──▶ reflection queue
                          │  (gh poll,            │ slot freed ──▶ Refill.refill_soon
                          │   decide_tick,   Stopper.start_kill (watchdog, deadline)
                          │   watchdogs)
                          ├─ Stopper (kill, force kill, stop all, worktree removal)
                          ├─ Resumer (a saved session's rows taken over)
                          ├─ NextRun (a follow-up, a CI repair: the loop asks it when an
                          │  open PR's checks fail)
                          └─ DispatchTable: the rows, the one lock, saving, events

Every part holds the one ``DispatchTable`` and changes rows only under its lock; what a
part needs of another it gets through a call named here (or ``LaunchHooks``), never
through another part's attributes. The parts import nothing from this module.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from chump_tui.activity import Activity
from chump_tui.agent_process import AgentProcess
from chump_tui.agent_streams.events import AgentEvent
from chump_tui.backlog import Gap, unusable_ids
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.budgets import Budgets
from chump_tui.engine.config import EngineConfig, Listener, default_log_dir
from chump_tui.engine.launching import Launcher, LaunchHooks, StartAgent
from chump_tui.engine.loop import MonitorLoop
from chump_tui.engine.outcomes import Outcomes
from chump_tui.engine.refill import Refill
from chump_tui.engine.resuming import Resumer
from chump_tui.engine.runs import NextRun
from chump_tui.engine.stopping import Stopper
from chump_tui.engine.table import DispatchTable, Live
from chump_tui.leftovers import Leftover
from chump_tui.pr_providers import PrProvider
from chump_tui.reflection_queue import ReflectionQueue
from chump_tui.reflections import ReflectionWriter
from chump_tui.session_store import SessionStore
from chump_tui.spawners import Spawner
from chump_tui.watchdog import Kill, Quiet

__all__ = ["Engine", "EngineConfig", "default_log_dir"]


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
        self.backlog: list[Gap] = list(backlog)
        self.store = store
        self.log_dir = self.config.log_dir or Path(tempfile.mkdtemp(prefix="chump-tui-logs-"))
        self.unusable = unusable_ids(self.backlog)
        self.on_close: list[Callable[[], None]] = []  # after the engine's own threads end

        self.table = DispatchTable(store, clock)
        self.budgets = Budgets(self.table, self.config)
        self.outcomes = Outcomes(self.table, writer, slot_freed=lambda: self.refill.refill_soon())
        self.stopper = Stopper(self.table, self.config, self.outcomes, repo_root)
        self.loop = MonitorLoop(self.table, self.config, provider, self.outcomes, self.stopper,
                                checks_failed=lambda live: self.runs.repair_if_due(live),
                                over_budget=self.budgets.attempt_over,
                                check_fleet_budget=self.budgets.check_fleet)
        self.launcher = Launcher(
            self.table, self.config, self.outcomes, repo_root, self.log_dir, self.backlog,
            self.unusable,
            LaunchHooks(slot_freed=lambda: self.refill.refill_soon(),
                        agent_started=self.loop.poll_soon, agent_exited=self.loop.decide_now,
                        earlier_prs=lambda gap_id: self.refill.earlier_prs(gap_id),
                        queued=lambda: self.refill.queued(),
                        why_no_new_agent=self.budgets.why_no_new_agent,
                        output_seen=self._output_seen))
        self._watched: str | None = None  # the attempt the operator looks at
        self.refill = Refill(self.table, self.config, self.launcher, self.backlog, repo_root,
                             provider, self.spawner, self.spawner_for_retry,
                             self.budgets.why_no_new_agent)
        self.runs = NextRun(self.table, self.config, self.outcomes, self.launcher, spawner,
                            provider, started=self.loop.poll_soon,
                            why_no_new_agent=self.budgets.why_no_new_agent)
        self.resumer = Resumer(self.table, self.launcher, self.stopper, self.outcomes,
                               spawner, restored=self._restored)

    # ------------------------------------------------------------------ state
    @property
    def clock(self) -> Callable[[], float]:
        return self.table.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.table.clock = clock

    @property
    def state_error(self) -> str | None:
        return self.table.state_error

    @property
    def reflections(self) -> ReflectionQueue:
        return self.outcomes.reflections

    @property
    def last_github_error(self) -> str | None:
        return self.loop.last_github_error

    @property
    def gh_polls(self) -> int:
        return self.loop.gh_polls

    @property
    def leftovers(self) -> dict[str, Leftover]:
        return self.refill.leftovers

    @property
    def held_elsewhere(self) -> dict[str, str]:
        return self.refill.held_elsewhere

    # ------------------------------------------------------------------ events and queries
    def subscribe(self, listener: Listener) -> None:
        self.table.subscribe(listener)

    def snapshot(self) -> list[Dispatch]:
        return self.table.snapshot()

    def get(self, key: str) -> Dispatch | None:
        return self.table.get(key)

    def output_tail(self, key: str, n: int = 400) -> list[str]:
        return self.table.output_tail(key, n)

    def output_lines_seen(self, key: str) -> int:
        return self.table.output_lines_seen(key)

    def activity(self, key: str) -> Activity | None:
        return self.table.activity(key)

    def watchdog_state(self, key: str, now: float | None = None) -> Quiet | Kill | None:
        live = self.table.live(key)
        if live is None:
            return None
        return self.loop.watchdog_state(live, self.clock() if now is None else now)

    def running_count(self) -> int:
        return self.table.running_count()

    def active_count(self) -> int:
        return self.table.active_count()

    def dispatched_gap_ids(self) -> set[str]:
        return self.table.gap_ids()

    def queued(self) -> list[str]:
        return self.refill.queued()

    def next_poll_in_s(self) -> float:
        return self.loop.next_poll_in_s()

    def all_over(self) -> bool:
        """Nothing runs, waits for its PR, waits for a slot or is being dispatched."""
        return self.active_count() == 0 and not self.refill.waiting \
            and not self.refill.dispatching()

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

    # ------------------------------------------------------------------ starting agents
    def dispatch(self, gaps: Iterable[Gap], queue: bool = False) -> list[Dispatch]:
        """Run the dispatch steps for each gap in turn (blocking: call off the UI thread).

        A gap this session already dispatched is retried as its next attempt in the same
        worktree, or skipped while an attempt is active or has shipped. ``queue``: only as
        many as max-parallel allows start now; the rest start as slots free.
        """
        gaps = list(gaps)
        if queue:
            gaps = self.refill.take_slots(gaps)
        return self.launcher.dispatch(gaps, self.spawner, self.spawner_for_retry,
                                      self.refill.run)

    def watch(self, key: str | None) -> None:
        """The operator looks at this attempt's output (None: at none): a fleet agent sent
        as summaries has its whole output sent meanwhile. Never blocks."""
        previous, self._watched = self._watched, key
        # Asked again while it stays looked at: its agent may have started since.
        for k, on in ((previous if previous != key else None, False), (key, True)):
            live = self.table.live(k) if k is not None else None
            watch = getattr(live.process, "watch", None) if live is not None else None
            if watch is not None:
                watch(on)

    def wait_for_dispatches(self, timeout_s: float | None = None) -> None:
        """Until the dispatches running on threads of their own (a fleet's) are done."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in list(self.refill.launchers):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def retry(self, key: str) -> Dispatch | None:
        """Dispatch an ended, unshipped attempt again as attempt N+1 (blocking)."""
        return self.launcher.retry(key, self.spawner_for_retry)

    def note_request(self, log_path: Path, remote: str) -> None:
        self.launcher.note_request(log_path, remote)

    def note_waiting(self, log_path: Path, waiting: str) -> None:
        self.launcher.note_waiting(log_path, waiting)

    def adopt(self, lost_key: str, start: StartAgent) -> str | None:
        return self.launcher.adopt(lost_key, start)

    def follow_up(self, key: str, message: str) -> str | None:
        """Resume attempt ``key``'s conversation with ``message`` (blocking: a running agent
        is stopped first); why it could not, or None."""
        return self.runs.follow_up(key, message)

    def why_no_follow_up(self, key: str) -> str | None:
        return self.runs.why_not(key)

    def restore(self, record: Dispatch, output: Iterable[str | AgentEvent] = (),
                process: AgentProcess | None = None) -> None:
        self.resumer.restore(record, output, process)

    def resume(self, records: Iterable[Dispatch]) -> list[str]:
        return self.resumer.resume(records)

    def _output_seen(self, live: Live) -> None:
        """An agent wrote: near its budget, the monitor decides now, not within a second (a
        fast agent spends a lot in a second)."""
        if self.budgets.enabled and self.budgets.near(live):
            self.loop.decide_now()

    def _restored(self) -> None:
        self.loop.poll_soon()
        self.loop.decide_now()

    # ------------------------------------------------------------------ continuous mode
    def set_continuous(self, on: bool) -> None:
        self.config.continuous = on
        if self.store is not None:  # a read-only console of this session shows it too
            self.store.meta["continuous"] = on
            with self.table.lock:
                self.table.save(set())
        if on:
            self.refill.refill_soon()

    def pickable_now(self, n: int) -> list[Gap]:
        return self.refill.pickable_now(n)

    def scan_leftovers(self) -> str | None:
        return self.refill.scan_leftovers(getattr(self.spawner, "held_elsewhere", None))

    # ------------------------------------------------------------------ stopping agents
    def kill(self, key: str, reason: str = "killed by operator") -> bool:
        return self.stopper.kill(key, reason)

    def force_kill(self, key: str) -> bool:
        return self.stopper.force_kill(key)

    def stop_all(self, reason: str = "interrupted", grace_s: float | None = None,
                 remove_worktrees: bool = False) -> None:
        """Kill every active agent in parallel and wait for all of them (blocking); nothing
        queued or refilled starts after it."""
        self.config.continuous = False
        self.table.stopping.set()
        self.refill.clear()
        self.stopper.stop_all(reason, grace_s, (self.spawner, self.spawner_for_retry),
                              lambda: list(self.refill.launchers))
        if remove_worktrees:
            for rec in self.snapshot():
                self.stopper.remove_worktree(rec.key)

    def remove_worktree(self, key: str) -> str | None:
        return self.stopper.remove_worktree(key)

    def settle(self, timeout_s: float) -> bool:
        """Wait (bounded) for agents whose outcome came before their process ended."""
        return self.table.wait(self.table.settled_processes, timeout_s)

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        self.loop.start()

    def poll_now(self) -> None:
        self.loop.poll_soon()

    def close(self) -> None:
        self.table.closed.set()
        self.loop.close()
        self.reflections.flush(10)
        self.reflections.close()
        for hook in self.on_close:
            hook()

    def wait_until_idle(self, timeout_s: float | None = None) -> bool:
        """Block until no dispatch is active and no refill is dispatching; False on timeout."""
        return self.table.wait(
            lambda: not any(lv.record.active for lv in self.table.rows.values())
            and not self.refill.dispatching(), timeout_s)
