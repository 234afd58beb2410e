"""The dispatch table: every attempt's row and what runs it, the one lock, the events.

The table is the only holder of rows (``Live``: a ``Dispatch`` row and the agent process,
output and threads that go with it) and of the lock every part takes to read or change
them. A change is saved (``state.json``, through the session store) before it is
announced to subscribers (``DispatchChanged``), so a crash never loses what a listener
was told. It also answers the read-only questions front ends ask, some without the lock
(see ``output_tail``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chump_tui.activity import Activity
from chump_tui.agent_process import AgentProcess, OutputLog
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.config import Listener
from chump_tui.events import DispatchChanged, EngineEvent, Notice
from chump_tui.session_store import SessionStore


@dataclass
class Live:
    """A Dispatch row and what goes with it while it is in the table."""

    record: Dispatch
    output: OutputLog
    process: AgentProcess | None = None
    kill_thread: threading.Thread | None = None
    # Set by the exit watcher once the process ended AND its output is drained,
    # so the reflection sees the agent's last lines.
    exit_seen: int | None = None
    busy_at: float | None = None  # when its descendants were last seen using CPU


def run_totals(rec: Dispatch, act: Activity) -> tuple[int, int, int, float | None, int]:
    """Turns, tokens in and out, cost and tool errors of every run of an attempt: the runs
    before this one (kept on its row) and this run's activity."""
    cost = act.cost_usd if rec.earlier_cost_usd is None else \
        rec.earlier_cost_usd + (act.cost_usd or 0.0)
    return (rec.earlier_turns + act.turns, rec.earlier_tokens_in + act.tokens_in,
            rec.earlier_tokens_out + act.tokens_out, cost,
            rec.earlier_tool_errors + act.tool_errors)


NOTHING_KEPT = OutputLog()
"""The output of every long-finished attempt: nothing (its log file keeps it all)."""


class DispatchTable:
    def __init__(self, store: SessionStore | None, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.lock = threading.RLock()
        self.idle = threading.Condition(self.lock)  # notified whenever a row may have ended
        self.rows: dict[str, Live] = {}
        self.order: list[str] = []
        self._of_gap: dict[str, list[Live]] = {}  # a thousand-row fleet asks per dispatch
        # Rows whose dispatch steps run now, by log path: a fleet's spawner names its row
        # by it (note_waiting, note_request), up to a thousand at once.
        self.dispatching: dict[str, Live] = {}
        self.listeners: list[Listener] = []
        self.state_error: str | None = None
        self.stopping = threading.Event()  # stop_all ran: no new agent may start
        self.closed = threading.Event()  # the engine is closing: its threads end

    # ------------------------------------------------------------------ rows
    def add(self, live: Live, why: str, save: bool = True) -> None:
        with self.lock:
            key = live.record.key
            if key not in self.rows:
                self._of_gap.setdefault(live.record.gap_id, []).append(live)
            self.rows[key] = live
            if key not in self.order:
                self.order.append(key)
            self.changed(live, why, save)

    def live(self, key: str) -> Live | None:
        return self.rows.get(key)

    def lives(self) -> list[Live]:
        with self.lock:
            return list(self.rows.values())

    def of_gap(self, gap_id: str) -> list[Live]:
        with self.lock:
            return list(self._of_gap.get(gap_id, ()))

    # ------------------------------------------------------------------ events
    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def emit(self, event: EngineEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:  # a broken listener must not stop the engine
                if not isinstance(event, Notice):
                    self.emit(Notice("error", f"listener failed: {exc!r}"))

    def changed(self, live: Live, why: str, save: bool = True) -> None:
        """Save (unless told not to) and announce a row's change (caller holds the lock)."""
        if save:
            self.save(live.record.key)
        self.emit(DispatchChanged(dataclasses.replace(live.record), why))  # type: ignore[arg-type]

    def save(self, changed: str | set[str]) -> None:
        """Persist the whole table (caller holds the lock); a failure is reported, not fatal.

        ``changed`` names the row (or rows) that changed: the store re-encodes only those.
        """
        if self.store is None:
            return
        try:
            self.store.save([self.rows[k].record for k in self.order], changed)
        except OSError as exc:
            message = f"cannot save {self.store.state_path}: {exc.strerror or exc}"
            if message != self.state_error:
                self.state_error = message
                self.emit(Notice("error", message))
            return
        self.state_error = None

    # ------------------------------------------------------------------ queries
    def snapshot(self) -> list[Dispatch]:
        with self.lock:
            return [dataclasses.replace(self.rows[k].record) for k in self.order]

    def get(self, key: str) -> Dispatch | None:
        with self.lock:
            live = self.rows.get(key)
            return dataclasses.replace(live.record) if live else None

    # The per-key reads the console makes ten times a second take no lock: the engine
    # holds it while it saves the table (an fsync), and rows are only ever added, so a
    # lookup without it is safe; OutputLog has a lock of its own.
    def output_tail(self, key: str, n: int = 400) -> list[str]:
        live = self.rows.get(key)
        return live.output.tail(n) if live else []

    def output_lines_seen(self, key: str) -> int:
        live = self.rows.get(key)
        return live.output.lines_seen if live else 0

    def activity(self, key: str) -> Activity | None:
        """What the agent of ``key`` is doing (a copy)."""
        live = self.rows.get(key)
        return live.output.activity() if live else None

    def running_count(self) -> int:
        """Active dispatches whose agent still runs (one that exited waits only for a PR)."""
        with self.lock:
            return sum(1 for lv in self.rows.values()
                       if lv.record.active and not lv.record.waiting_for_pr)

    def active_count(self) -> int:
        with self.lock:
            return sum(1 for lv in self.rows.values() if lv.record.active)

    def gap_ids(self) -> set[str]:
        with self.lock:
            return {lv.record.gap_id for lv in self.rows.values()}

    def wait(self, done: Callable[[], bool], timeout_s: float | None) -> bool:
        """Block until ``done()`` (asked under the lock at every change); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self.idle:
            while not done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.idle.wait(0.1 if left is None else min(left, 0.1))
        return True

    def settled_processes(self) -> bool:
        """No agent whose outcome came before its process ended is still running."""
        return not any(lv.process is not None and lv.exit_seen is None
                       and lv.record.phase == "ended" for lv in self.rows.values())
