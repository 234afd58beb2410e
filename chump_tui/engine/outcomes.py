"""An attempt's end: its outcome recorded once, its numbers onto its row, its reflection.

``finish`` is the one way a row gets its terminal outcome (whoever decided it: the loop,
a kill, a retry of an attempt that waits for its PR). The outcome is saved before its
reflection is queued, so a crash in between leaves a reflection to write, never a lost
outcome; a slot is freed (continuous mode refills) before the outcome is announced, so
a listener never sees a moment with nothing active that is about to fill again.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from chump_tui.activity import Activity
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.config import ENDED_TAIL_LINES, KEEP_OUTPUT_OF_ENDED
from chump_tui.engine.table import NOTHING_KEPT, DispatchTable, Live, run_totals
from chump_tui.events import Notice
from chump_tui.harness import harness_named
from chump_tui.log_lines import redact
from chump_tui.monitor import DispatchOutcome
from chump_tui.outside_text import one_line
from chump_tui.reflection_queue import ReflectionQueue
from chump_tui.reflections import DispatchReflection, ReflectionWriter


class Outcomes:
    def __init__(self, table: DispatchTable, writer: ReflectionWriter,
                 slot_freed: Callable[[], None]) -> None:
        self.table = table
        self.slot_freed = slot_freed  # continuous mode and the queue fill it
        self.reflections = ReflectionQueue(writer, self._reflection_written,
                                           self._reflection_failed)
        self._reflected: collections.deque[str] = collections.deque()

    def finish(self, live: Live, outcome: DispatchOutcome, in_flight: int | None = None) -> None:
        """Record a terminal outcome once, queue its reflection, free its slot (caller holds
        the table's lock)."""
        rec = live.record
        if rec.outcome is not None:
            return
        if in_flight is None:
            in_flight = sum(1 for lv in self.table.rows.values() if lv.record.active)
        self.sync_activity(live)
        rec.outcome = outcome
        rec.phase = "ended"
        rec.ended_at = self.table.clock()
        rec.kill_deadline = None
        self.table.save(rec.key)
        self.queue_reflection(live, outcome, in_flight)
        self.slot_freed()
        self.table.changed(live, "outcome", save=False)
        self.table.idle.notify_all()

    @classmethod
    def activity_differs(cls, rec: Dispatch, act: Activity) -> bool:
        """Whether the row's copy of the agent's numbers is behind its activity."""
        if act.events == 0 and act.finished is None:
            return False
        return ((rec.turns, rec.tokens_in, rec.tokens_out, rec.cost_usd, rec.tool_errors)
                != run_totals(rec, act)
                or rec.model != act.model or rec.session_id != act.session_id)

    @classmethod
    def sync_activity(cls, live: Live, act: Activity | None = None) -> None:
        """Turns, tokens, cost, tool errors, the session and the agent's own error onto the
        row (kept in state.json): whatever the attempt's outcome, the totals add every
        attempt, and every run of it."""
        act = act or live.output.activity()
        rec = live.record
        if act.events == 0 and act.finished is None:
            return
        rec.turns, rec.tokens_in, rec.tokens_out, rec.cost_usd, rec.tool_errors = \
            run_totals(rec, act)
        rec.model = act.model
        rec.session_id = act.session_id
        if act.fatal_error:
            rec.agent_error = redact(act.fatal_error)

    @staticmethod
    def fold_run(live: Live) -> None:
        """The run that ended becomes one of the earlier runs (caller synced it)."""
        rec = live.record
        if rec.run == 1:
            rec.first_run_cost_usd = rec.cost_usd
        rec.earlier_turns, rec.earlier_tokens_in, rec.earlier_tokens_out = \
            rec.turns or 0, rec.tokens_in or 0, rec.tokens_out or 0
        rec.earlier_cost_usd = rec.cost_usd
        rec.earlier_tool_errors = rec.tool_errors or 0

    @staticmethod
    def exit_detail(live: Live) -> str:
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

    def queue_reflection(self, live: Live, outcome: DispatchOutcome, in_flight: int) -> None:
        rec = live.record
        end = rec.ended_at if rec.ended_at is not None else self.table.clock()
        runs = " ".join(f"{name}={n}" for name, n in (("follow_ups", rec.follow_ups),
                                                      ("ci_repairs", rec.ci_repairs)) if n)
        # A run that reopened an ended attempt ends in a reflection of its own (the writer
        # keeps one per uid); a repair before any outcome leaves the attempt's one.
        reopened = rec.outcomes_before > 0
        uid = f"{rec.uid}-run{rec.run}" if reopened else rec.uid
        start = rec.run_started_at if reopened and rec.run_started_at else rec.started_at
        self.reflections.put(rec.key, DispatchReflection.build(
            rec.gap_id, rec.effort or "m", outcome, int(end - start),
            in_flight - 1, rec.backend or "claude", live.output.signal_lines(), uid, runs))

    def _reflection_written(self, key: str) -> None:
        with self.table.lock:
            live = self.table.live(key)
            # A follow-up may have reopened the attempt meanwhile: its next end is
            # reflected anew, and until then nothing of it is settled.
            if live is not None and not live.record.active:
                live.record.reflection_written = True
                live.output.compact(ENDED_TAIL_LINES)
                self._reflected.append(key)
                while len(self._reflected) > KEEP_OUTPUT_OF_ENDED:
                    old = self.table.rows[self._reflected.popleft()]
                    if not old.record.active and (old.exit_seen is not None
                                                  or old.process is None):
                        old.output = NOTHING_KEPT  # its row keeps turns and cost
                        old.process = None
                self.table.changed(live, "reflected")

    def _reflection_failed(self, key: str, error: str) -> None:
        self.table.emit(Notice("warning",
                               f"reflection for {key} not written yet ({error}); retrying"))
