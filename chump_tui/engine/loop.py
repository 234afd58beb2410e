"""The engine's two threads: the PR poller (one ``gh`` call for every running branch per
tick) and the monitor, which runs ``decide_tick`` on every running row at least once a
second and whenever an agent exits or a poll lands, and watches for agents gone quiet.

Two threads so a hanging ``gh`` holds up only the poller, never exits, deadlines,
watchdogs or kills. What the monitor decides it hands to ``Outcomes`` (an end) or the
``Stopper`` (a kill); it changes rows only under the table's lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chump_tui import watchdog
from chump_tui.engine.config import EVALUATE_EVERY_S, FAILED_STILL_RUNNING_S, EngineConfig
from chump_tui.engine.outcomes import Outcomes
from chump_tui.engine.stopping import Stopper
from chump_tui.engine.table import DispatchTable, Live
from chump_tui.events import Attention, GitHubPolled
from chump_tui.log_lines import redact
from chump_tui.monitor import (
    DispatchOutcome,
    Done,
    KeepGoing,
    KillThenDone,
    MarkStalled,
    decide_tick,
)
from chump_tui.pr_providers import PrProvider
from chump_tui.watchdog import BusyProbe, Kill, Quiet


class MonitorLoop:
    def __init__(self, table: DispatchTable, config: EngineConfig, provider: PrProvider,
                 outcomes: Outcomes, stopper: Stopper,
                 checks_failed: Callable[[Live], bool],
                 over_budget: Callable[[Live], str | None],
                 check_fleet_budget: Callable[[], None]) -> None:
        self.table = table
        self.checks_failed = checks_failed  # an open PR failed its checks: repaired? (--fix-ci)
        self.over_budget = over_budget  # why to stop an attempt for its spending, or None
        self.check_fleet_budget = check_fleet_budget
        self._quiet_told: set[str] = set()  # agents whose QUIET was announced
        self.config = config
        self.provider = provider
        self.outcomes = outcomes
        self.stopper = stopper
        self.last_github_error: str | None = None
        self.gh_polls = 0
        self._wake = threading.Event()
        self._poll_wake = threading.Event()
        self._poll_requested = True
        self._next_poll_mono = 0.0
        self._busy = BusyProbe()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._run, name="monitor", daemon=True),
                threading.Thread(target=self._poll_loop, name="pr-poller", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    def close(self) -> None:
        """End both threads (the table's ``closed`` is set by the caller)."""
        self._wake.set()
        self._poll_wake.set()
        if self._threads:
            self._threads[0].join(10)
            self._threads[1].join(2)  # a poll stuck in `gh` ends with its own timeout

    def decide_now(self) -> None:
        self._wake.set()

    def poll_soon(self) -> None:
        self._poll_requested = True
        self._poll_wake.set()

    def next_poll_in_s(self) -> float:
        return max(0.0, self._next_poll_mono - time.monotonic())

    def _run(self) -> None:
        while not self.table.closed.is_set():
            self._wake.clear()  # before deciding: a wake-up meanwhile is not lost
            self.evaluate()
            self.check_watchdogs()
            self._wake.wait(EVALUATE_EVERY_S)

    def _poll_loop(self) -> None:
        while not self.table.closed.is_set():
            self._poll_wake.clear()
            if self._poll_requested or time.monotonic() >= self._next_poll_mono:
                self._poll_requested = False
                self.poll_github()
                self._next_poll_mono = time.monotonic() + self.config.tick_s
                self._wake.set()  # decide with the fresh PR states
            self._poll_wake.wait(max(0.0, self._next_poll_mono - time.monotonic()))

    # ------------------------------------------------------------------ GitHub
    def poll_github(self) -> None:
        with self.table.lock:
            branches = sorted({lv.record.branch for lv in self.table.rows.values()
                               if lv.record.phase in ("running", "stalled")})
        if not branches:
            return
        self.gh_polls += 1
        try:
            answer = self.provider.poll(branches)
        except Exception as exc:  # GitHub trouble is reported and retried, never fatal
            self.last_github_error = redact(str(exc)) or type(exc).__name__
            self.table.emit(GitHubPolled(False, self.last_github_error, self.config.tick_s))
            return
        self.last_github_error = None
        with self.table.lock:
            for live in self.table.rows.values():
                rec = live.record
                if rec.phase not in ("running", "stalled") or rec.branch not in answer:
                    continue
                pr = answer[rec.branch]
                if pr is not None and (pr.number in rec.stale_prs
                                       or pr.opened_before(rec.started_at)):
                    pr = None  # an earlier attempt's PR: never this one's outcome
                if pr != rec.pr:
                    rec.pr = pr
                    self.table.changed(live, "pr")
        self.table.emit(GitHubPolled(True, None, self.config.tick_s))

    # ------------------------------------------------------------------ deciding
    def evaluate(self) -> None:
        now = self.table.clock()
        with self.table.lock:
            in_flight = sum(1 for lv in self.table.rows.values() if lv.record.active)
            for live in list(self.table.rows.values()):
                if live.record.phase in ("running", "stalled"):
                    self._decide(live, now, in_flight)

    def _decide(self, live: Live, now: float, in_flight: int) -> None:
        """``decide_tick`` for one running row, and what it says done (caller holds the lock)."""
        rec = live.record
        code = live.exit_seen
        if code is not None and rec.exit_code is None:
            rec.exit_code = code
            if code == 0:
                self.table.changed(live, "exited")
        running = live.process is not None and code is None
        # A later run (a follow-up, a CI repair) has its own deadlines.
        decision = decide_tick(rec.pr, rec.run_started_at or rec.started_at, now,
                               rec.soft_deadline_s, code, running)
        if isinstance(decision, KeepGoing):
            if rec.pr is not None and rec.pr.failed_checks and self.checks_failed(live):
                return
            if rec.phase == "stalled" and rec.pr is not None:
                rec.phase = "running"
                self.table.changed(live, "pr")
        elif isinstance(decision, MarkStalled):
            if rec.phase != "stalled":
                rec.phase = "stalled"
                self.table.changed(live, "stalled")
        elif isinstance(decision, Done):
            outcome = decision.outcome
            lost = getattr(live.process, "lost", "")  # a fleet host went silent
            if lost:
                outcome = DispatchOutcome.killed(lost)
            elif outcome.kind == "killed" and code not in (None, 0):
                rec.agent_error = self.outcomes.exit_detail(live)
            self.outcomes.finish(live, outcome, in_flight)
        elif isinstance(decision, KillThenDone):
            self.stopper.start_kill(live, decision.reason, self.config.kill_grace_s)

    def watchdog_state(self, live: Live, now: float) -> Quiet | Kill | None:
        """The watchdogs' view of one running agent (the card's QUIET badge)."""
        if live.record.phase not in ("running", "stalled") or live.process is None \
                or live.exit_seen is not None:
            return None
        act = live.output.activity()
        started = live.record.run_started_at or live.record.started_at
        return watchdog.check(started, act.first_event_at, act.last_event_at,
                              now, self.config.first_output_timeout_s,
                              self.config.idle_timeout_s, live.busy_at)

    def check_watchdogs(self) -> None:
        """Kill agents that went quiet, sparing those whose descendants are busy; copy a
        running agent's cost and turns into its row as soon as it reports them."""
        now = self.table.clock()
        with self.table.lock:
            watched = [lv for lv in self.table.rows.values()
                       if lv.record.phase in ("running", "stalled") and lv.process is not None
                       and lv.exit_seen is None]
        synced: list[Live] = []
        for live in watched:
            act = live.output.activity()
            if self.outcomes.activity_differs(live.record, act):
                synced.append(live)
                with self.table.lock:
                    self.outcomes.sync_activity(live, act)
                    over = self.over_budget(live)
                    if over is not None and live.record.phase in ("running", "stalled"):
                        self.stopper.start_kill(live, over, self.config.kill_grace_s)
                        continue
            assert live.process is not None
            verdict = self.watchdog_state(live, now)
            if act.fatal_at is not None and now - max(act.fatal_at, act.last_event_at or 0) \
                    >= FAILED_STILL_RUNNING_S:  # its harness said the run failed: it is over
                verdict = Kill(f"the agent failed and did not exit: {redact(act.fatal_error)}")
            if verdict is None:
                self._busy.forget(live.process.pid)
                self._quiet_told.discard(live.record.key)
                continue
            if live.process.busy(self._busy):  # a build beneath it: working, not idle
                live.busy_at = now
                continue
            if isinstance(verdict, Quiet) and live.record.key not in self._quiet_told:
                self._quiet_told.add(live.record.key)
                self.table.emit(Attention("quiet", live.record.key,
                                          f"{live.record.key} has been quiet for "
                                          f"{int(verdict.seconds)}s"))
            if isinstance(verdict, Kill):
                reason = verdict.reason
                if act.retries:  # what it saw meanwhile: the model API failing, not silence
                    reason += (f" (waiting on the model API: {act.retries} retries, last "
                               f"{act.last_retry})")
                with self.table.lock:
                    if live.record.phase in ("running", "stalled"):
                        self.stopper.start_kill(live, reason, self.config.kill_grace_s)
        if synced:  # every row whose numbers moved, in one save (not one fsync each)
            with self.table.lock:
                self.table.save({lv.record.key for lv in synced})
                for live in synced:
                    self.table.changed(live, "activity", save=False)
            self.check_fleet_budget()
