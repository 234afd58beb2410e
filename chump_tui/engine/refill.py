"""Which gap starts when a slot frees: the operator's queue (a selection bigger than
max-parallel) first, then in continuous mode the backlog's next pickable gap, skipping
what this session runs or shipped, what earlier runs left (``leftovers``) and what another
console holds (a fleet's claims).

A picked gap's row is reserved under the table's lock before its dispatch starts on a
thread of its own, so an operator's dispatch and a refill never take the same gap.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path

from chump_tui.backlog import Gap, done_ids
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.config import EngineConfig
from chump_tui.engine.launching import Launcher
from chump_tui.engine.table import DispatchTable
from chump_tui.leftovers import Leftover
from chump_tui.leftovers import scan as scan_for_leftovers
from chump_tui.picker import pickable_gaps
from chump_tui.pr_providers import PrProvider
from chump_tui.spawners import Spawner


class Refill:
    def __init__(self, table: DispatchTable, config: EngineConfig, launcher: Launcher,
                 backlog: list[Gap], repo_root: Path, provider: PrProvider,
                 spawner: Spawner, spawner_for_retry: Spawner,
                 why_no_new_agent: Callable[[], str | None]) -> None:
        self.table = table
        self.why_no_new_agent = why_no_new_agent  # the session's budget is spent
        self.config = config
        self.launcher = launcher
        self.backlog = backlog
        self.repo_root = repo_root
        self.provider = provider
        self.spawner = spawner
        self.spawner_for_retry = spawner_for_retry
        self.waiting: list[Gap] = []  # for a free slot, in order
        self.launchers: list[threading.Thread] = []  # refills dispatching now
        self.leftovers: dict[str, Leftover] = {}  # branches earlier runs left, by gap id
        self.held_elsewhere: dict[str, str] = {}  # gap id -> who claimed it (a fleet's claims)

    # ------------------------------------------------------------------ the queue
    def take_slots(self, gaps: list[Gap]) -> list[Gap]:
        """The gaps that may start now; the rest wait (once each) for a slot."""
        with self.table.lock:
            slots = max(0, self.config.max_parallel - self.table.active_count())
            waiting = {g.id for g in self.waiting}
            self.waiting += [g for g in gaps[slots:] if g.id not in waiting]
        return gaps[:slots]

    def queued(self) -> list[str]:
        """Ids waiting for a free slot. No lock: the console asks ten times a second, and
        copying a list is atomic."""
        return [g.id for g in list(self.waiting)]

    def clear(self) -> None:
        with self.table.lock:
            self.waiting.clear()

    def earlier_prs(self, gap_id: str) -> list[int]:
        """A closed or merged PR an earlier run left on the gap's branch: never this run's."""
        left = self.leftovers.get(gap_id)
        if left is None or left.pr is None or left.pr.state == "OPEN":
            return []
        return [left.pr.number]

    # ------------------------------------------------------------------ refilling
    def refill_soon(self) -> None:
        """Fill free slots: queued gaps first, then (continuous mode) the next pickable."""
        if self.table.closed.is_set() or self.table.stopping.is_set() \
                or self.why_no_new_agent() is not None:
            return
        with self.table.lock:
            slots = self.config.max_parallel - self.table.running_count()
            if slots <= 0 or not (self.waiting or self.config.continuous):
                return
            queued = self.waiting[:slots]
            del self.waiting[:slots]
            picked = (self.pickable_now(slots - len(queued)) if self.config.continuous
                      and slots > len(queued) else [])
            picked = [g for g in picked if g.id not in {q.id for q in queued}]
            # Reserved now, under the lock: nobody races them.
            lives = [self.launcher.reserve(g, 1, self.earlier_prs(g.id)) for g in picked]
        if not lives and not queued:
            return

        def launch_all() -> None:
            self.launcher.dispatch(queued, self.spawner, self.spawner_for_retry, self.run)
            for live in lives:
                self.run(functools.partial(self.launcher.launch, live, self.spawner))

        self.in_background(launch_all)

    def in_background(self, job: Callable[[], None]) -> None:
        """``job`` on a thread of its own, one of the dispatches a stop waits for."""
        thread = threading.Thread(target=job, name="dispatch", daemon=True)
        self.launchers = [t for t in self.launchers if t.is_alive()] + [thread]
        thread.start()

    def run(self, job: Callable[[], None]) -> None:
        """How a row's dispatch steps run: in turn, or each on a thread of its own when the
        spawner dispatches through a fleet (a dispatch may wait long for a host there)."""
        if getattr(self.spawner, "dispatches_in_parallel", False):
            self.in_background(job)
        else:
            job()

    def dispatching(self) -> bool:
        return any(t.is_alive() for t in self.launchers)

    def pickable_now(self, n: int) -> list[Gap]:
        """Up to ``n`` gaps continuous mode would start next, in the picker's order."""
        with self.table.lock:
            done = done_ids(self.backlog) | {
                lv.record.gap_id for lv in self.table.rows.values()
                if lv.record.outcome is not None and lv.record.outcome.kind == "shipped"
            } | {gid for gid, left in self.leftovers.items() if left.shipped}
            # A gap whose last attempt was lost with its host is free again (its claim too).
            latest: dict[str, Dispatch] = {}
            for lv in self.table.rows.values():
                seen = latest.get(lv.record.gap_id)
                if seen is None or lv.record.attempt > seen.attempt:
                    latest[lv.record.gap_id] = lv.record
            taken = {gid for gid, rec in latest.items() if not rec.lost}
            blocked = {gid for gid, left in self.leftovers.items()
                       if left.reason(self.config.include_shipped)}
            blocked |= set(self.held_elsewhere)
            # A fleet's gaps another console shipped during this session (no I/O here).
            shipped_elsewhere = getattr(self.spawner, "shipped_elsewhere", None)
            if shipped_elsewhere is not None:
                blocked |= set(shipped_elsewhere())
        candidates = [g for g in self.backlog if g.id not in taken and g.id not in blocked]
        return pickable_gaps(candidates, n, done)

    def scan_leftovers(self, held_by: Callable[[set[str]], dict[str, str]] | None) -> str | None:
        """Look for branches earlier runs left for the backlog's gaps (blocking: git, and one
        gh call when there are any). Returns GitHub's error when it could not be asked.
        ``held_by``: a spawner's view of claims held elsewhere (the fleet's), by gap id."""
        found, error = scan_for_leftovers(self.repo_root, self.backlog, lambda: self.provider)
        held = held_by({g.id for g in self.backlog}) if held_by else {}
        with self.table.lock:
            self.leftovers = found
            self.held_elsewhere = held
        return error
