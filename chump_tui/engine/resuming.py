"""Taking over rows known from elsewhere: a saved session's (``resume``) or a test's
(``restore``). Live agents are watched again, what ended unwatched is judged, a kill in its
grace is carried on, an unwritten reflection is written, and a request the fleet had not
answered yet is waited for again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from chump_tui.agent_process import AgentProcess, OutputLog, read_log
from chump_tui.agent_streams.events import AgentEvent, PlainLine
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.launching import Launcher, StartAgent
from chump_tui.engine.outcomes import Outcomes
from chump_tui.engine.stopping import Stopper
from chump_tui.engine.table import DispatchTable, Live
from chump_tui.harness import stream_format
from chump_tui.monitor import DispatchOutcome
from chump_tui.spawners import Spawner


class Resumer:
    def __init__(self, table: DispatchTable, launcher: Launcher, stopper: Stopper,
                 outcomes: Outcomes, spawner: Spawner,
                 restored: Callable[[], None]) -> None:
        self.table = table
        self.launcher = launcher
        self.stopper = stopper
        self.outcomes = outcomes
        self.spawner = spawner
        self.restored = restored  # ask GitHub and decide: rows arrived

    def restore(self, record: Dispatch, output: Iterable[str | AgentEvent] = (),
                process: AgentProcess | None = None) -> None:
        """Put a dispatch known from elsewhere (the session file, a test) into the table.

        ``output`` is what it printed already (lines, or events of its harness). An active
        record with a live ``process`` is watched again (its log file is re-read from the
        top, then followed); an active record without one is judged by its PR and
        deadlines as if its agent had exited cleanly.
        """
        live = Live(dataclasses.replace(record), OutputLog(self.table.clock), process=process)
        events = [PlainLine(item) if isinstance(item, str) else item for item in output]
        if events:
            live.output.record(events)
        log_path = Path(record.log_path) if record.log_path else None
        fmt = stream_format(record.harness)
        if process is not None and log_path is not None:
            process.follow(log_path, live.output, self.launcher.line_sink(record.key), fmt=fmt)
        elif log_path is not None and log_path.exists():
            read_log(log_path, live.output, fmt)
        with self.table.lock:
            if record.active:
                if process is not None:
                    self.launcher.watch_exit(live, process)
                elif record.phase in ("running", "stalled"):
                    live.exit_seen = record.exit_code if record.exit_code is not None else 0
            self.table.add(live, "restored")
        self.restored()

    def resume(self, records: Iterable[Dispatch]) -> list[str]:
        """Take over a saved session: re-attach live agents, finish what ended unwatched.

        Returns one note per decision worth telling the operator, the first a summary.
        """
        notes: list[str] = []
        reattached = gone = 0
        resume_dispatch = getattr(self.spawner, "resume_dispatch", None)
        reattach = getattr(self.spawner, "reattach", None)
        unanswered: list[tuple[str, StartAgent]] = []
        for rec in records:
            if rec.phase == "dispatching" and resume_dispatch is not None:
                # A fleet's: its request went out (a host may have started it since), or
                # none yet (it waited for a host; nothing was made here): it goes on.
                unanswered.append((rec.key, resume_dispatch(rec)))
                notes.append(f"{rec.key}: was being dispatched when the console stopped; "
                             + ("waiting for the fleet's answer" if rec.remote.partition("/")[2]
                                else "waiting for a host again"))
            elif rec.phase == "dispatching":
                rec.phase = "spawn_failed"
                rec.error = "console stopped during dispatch (check the worktree)"
                rec.ended_at = rec.ended_at or self.table.clock()
                notes.append(f"{rec.key}: was being dispatched when the console stopped")
            process = None
            if rec.phase in ("running", "stalled", "killing") and rec.pid is not None:
                if rec.remote and reattach is not None:  # a fleet agent: its host says
                    process = reattach(rec)
                elif rec.process_start is not None:
                    process = AgentProcess.attach(rec.pid, rec.process_start, rec.log_path)
                notes.append(f"{rec.key}: pid {rec.pid} "
                             + ("re-attached" if process else "is gone; judged by its PR"))
                reattached += process is not None
                gone += process is None
            self.restore(rec, process=process)
            self._carry_on(rec, process, notes)
        for key, wait in unanswered:  # each on a thread: running once its host answers
            live = self.table.rows[key]
            threading.Thread(target=self.launcher.follow, name=f"resumed-dispatch-{key}",
                             daemon=True,
                             args=(live, wait, "started by its host while the console was "
                                               "down")).start()
        if reattached or gone:
            notes.insert(0, f"re-attached {reattached} agent(s) still running from the console "
                            f"that closed" + (f"; {gone} ended while nobody watched" if gone
                                              else ""))
        return notes

    def _carry_on(self, rec: Dispatch, process: AgentProcess | None, notes: list[str]) -> None:
        """What the closed console left half done for this row: a kill, a reflection."""
        with self.table.lock:
            live = self.table.rows[rec.key]
            if rec.phase == "killing":
                reason = rec.kill_reason or "killed"
                if process is not None:
                    grace = max(0.0, (rec.kill_deadline or 0) - self.table.clock())
                    live.record.phase = "running"
                    self.stopper.start_kill(live, reason, grace)
                else:
                    self.outcomes.finish(live, DispatchOutcome.killed(reason))
            elif rec.outcome is not None and not rec.reflection_written:
                self.outcomes.queue_reflection(live, rec.outcome, 1)
                notes.append(f"{rec.key}: reflection not written yet; writing it now")
