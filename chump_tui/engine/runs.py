"""The next run of an attempt's conversation: the operator's follow-up, or a CI repair.

A run resumes the harness's own session (``claude -p --resume``, ``codex exec resume``,
``opencode run --session``, ``gemini --resume``) in the attempt's worktree, appending to its
log, on the same row: its numbers add to the attempt's, its deadlines and watchdogs count
from its start, and it is saved like the first run, so a console that crashes re-attaches
it as that run. A running agent is stopped first (its CLI at once, its tools after the
grace) without an outcome: the attempt goes on.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path

from chump_tui.activity import run_line
from chump_tui.agent_process import OutputLog
from chump_tui.engine.config import EngineConfig
from chump_tui.engine.launching import Launcher
from chump_tui.engine.outcomes import Outcomes
from chump_tui.engine.table import NOTHING_KEPT, DispatchTable, Live
from chump_tui.errors import DispatchError
from chump_tui.events import Notice
from chump_tui.harness import harness_named, usable_session_id
from chump_tui.log_lines import redact
from chump_tui.monitor import DispatchOutcome
from chump_tui.pr_providers import PrProvider, PrStatus
from chump_tui.safe_fs import open_nofollow
from chump_tui.spawners import Spawner

MAX_MESSAGE_BYTES = 64 * 1024

FOLLOW_UP_PROMPT = (
    "A follow-up from the operator on gap {gap} (the same worktree and branch as before; "
    "commit and push your changes there as before):\n\n{message}\n")

CI_REPAIR_PROMPT = (
    "CI failed on your pull request #{pr} for gap {gap}. Failing checks: {checks}.\n"
    "Find the cause, fix it, commit and push to the same branch (the pull request updates "
    "itself). The end of each failed run's log:\n\n{logs}\n")


@dataclasses.dataclass(frozen=True)
class _Before:
    """What a row was before its next run was prepared (restored if the run cannot start)."""

    phase: str
    outcome: DispatchOutcome | None
    ended_at: float | None
    reflection_written: bool


class NextRun:
    def __init__(self, table: DispatchTable, config: EngineConfig, outcomes: Outcomes,
                 launcher: Launcher, spawner: Spawner, provider: PrProvider,
                 started: Callable[[], None],
                 why_no_new_agent: Callable[[], str | None]) -> None:
        self.why_no_new_agent = why_no_new_agent  # the session's budget is spent
        self.table = table
        self.config = config
        self.outcomes = outcomes
        self.launcher = launcher
        self.spawner = spawner
        self.provider = provider
        self.started = started  # a run began: ask GitHub soon

    # ------------------------------------------------------------------ may it?
    def why_not(self, key: str) -> str | None:
        """Why the attempt ``key`` cannot be followed up now, or None."""
        with self.table.lock:
            live = self.table.live(key)
            if live is None:
                return "no such dispatch"
            self.outcomes.sync_activity(live)  # its session id, if it said one since
            return self._why_not(live)

    def _why_not(self, live: Live) -> str | None:
        rec = live.record
        if self.table.stopping.is_set():
            return "chump-tui is stopping"
        paused = self.why_no_new_agent()
        if paused is not None:
            return paused
        if rec.phase in ("dispatching", "killing"):
            return f"it is {rec.label().lower()}"
        if rec.phase == "spawn_failed":
            return "its agent never started"
        if rec.outcome is not None and rec.outcome.kind == "shipped":
            return f"its PR #{rec.outcome.pr_number} is merged (dispatch the gap again for more)"
        if rec.remote:
            return "it runs on a fleet host (follow-ups reach this machine's agents only)"
        harness = harness_named(rec.harness)
        if harness is None or harness.resume_argv is None \
                or getattr(self.spawner, "resume_agent", None) is None:
            return f"its agent ({rec.harness or rec.backend or 'none'}) cannot be resumed"
        if not usable_session_id(rec.session_id):
            return "its agent has not reported a session to resume"
        if rec.worktree_removed or not Path(rec.worktree).is_dir():
            return "its worktree was removed"
        other = next((lv.record for lv in self.table.of_gap(rec.gap_id)
                      if lv is not live and lv.record.active), None)
        if other is not None:
            return f"attempt #{other.attempt} is {other.label().lower()} in this worktree"
        return None

    # ------------------------------------------------------------------ follow-up
    def follow_up(self, key: str, message: str) -> str | None:
        """Resume attempt ``key``'s conversation with the operator's ``message`` (blocking:
        a running agent is stopped first). Returns why it could not, or None."""
        message = message.strip()
        if not message:
            return "the message is empty"
        if len(message.encode("utf-8")) > MAX_MESSAGE_BYTES:
            return f"the message is over {MAX_MESSAGE_BYTES // 1024} KiB"
        with self.table.lock:
            live = self.table.live(key)
            if live is None:
                return "no such dispatch"
            self.outcomes.sync_activity(live)
            why = self._why_not(live)
            if why is not None:
                return why
            rec = live.record
            running = rec.phase in ("running", "stalled") and live.exit_seen is None
            process = live.process if running else None
            if process is not None:
                rec.phase = "killing"
                rec.kill_reason = "stopped for a follow-up"
                rec.kill_deadline = self.table.clock() + self.config.kill_grace_s
                self.table.changed(live, "killing")
        if process is not None:
            process.terminate_group(self.config.kill_grace_s, stop_agent_first=True)
            self.table.wait(lambda: live.exit_seen is not None, 10)
        with self.table.lock:
            before = self._prepare(live, f"follow-up {rec.run + 1}")
        prompt = FOLLOW_UP_PROMPT.format(gap=rec.gap_id, message=message)
        return self._launch(live, before, prompt, counts="follow_ups")

    # ------------------------------------------------------------------ CI repair
    def repair_due(self, live: Live) -> bool:
        """Whether the attempt's open PR failed its checks and ``--fix-ci`` allows another
        repair (caller holds the lock): its agent is done, and this head was not given to a
        repair already (a repair that pushed nothing is not run again on the same failure)."""
        rec, pr = live.record, live.record.pr
        if self.config.fix_ci <= rec.ci_repairs or pr is None or pr.state != "OPEN" \
                or not pr.failed_checks:
            return False
        if live.process is not None and live.exit_seen is None:
            return False  # its agent is still at it
        if pr.head_sha and pr.head_sha == rec.repaired_head:
            return False
        return self._why_not(live) is None

    def repair_if_due(self, live: Live) -> bool:
        """Start a CI repair if one is due (caller holds the lock); whether it started."""
        if not self.repair_due(live):
            return False
        self.start_repair(live)
        return True

    def start_repair(self, live: Live) -> None:
        """Resume the agent with its failing checks and their logs (caller holds the lock;
        the logs are fetched and the agent started on a thread of their own)."""
        rec = live.record
        pr = rec.pr
        assert pr is not None
        rec.ci_repairs += 1
        rec.repaired_head = pr.head_sha
        before = self._prepare(live, f"fixing CI ({rec.ci_repairs}/{self.config.fix_ci})")

        def run() -> None:
            prompt = CI_REPAIR_PROMPT.format(pr=pr.number, gap=rec.gap_id,
                                             checks=", ".join(pr.failed_checks),
                                             logs=self._failed_logs(pr))
            self._launch(live, before, prompt, counts="")

        threading.Thread(target=run, name=f"ci-repair-{rec.key}", daemon=True).start()

    def _failed_logs(self, pr: PrStatus) -> str:
        fetch = getattr(self.provider, "failed_log", None)
        logs = []
        for run_id in pr.failed_runs:
            text = fetch(run_id) if fetch is not None else ""
            logs.append(f"--- run {run_id} ---\n{text or '(gh gave no log for this run)'}")
        return "\n\n".join(logs) or "(no failed run's log was available)"

    # ------------------------------------------------------------------ the run itself
    def _prepare(self, live: Live, note: str) -> _Before:
        """Fold the run that ended into the row's earlier numbers and mark it dispatching
        (caller holds the lock). Not saved: a crash now leaves the row as it was."""
        rec = live.record
        before = _Before(rec.phase, rec.outcome, rec.ended_at, rec.reflection_written)
        self.outcomes.sync_activity(live)
        self.outcomes.fold_run(live)
        if live.output is NOTHING_KEPT:  # long over: its lines are in its log file
            live.output = OutputLog(self.table.clock)
        rec.run_note = note
        live.output.next_run(run_line(rec.run + 1, note))
        rec.phase = "dispatching"
        self.table.changed(live, "next run", save=False)
        return before

    def _launch(self, live: Live, before: _Before, prompt: str, counts: str) -> str | None:
        rec = live.record
        resume = getattr(self.spawner, "resume_agent", None)
        try:
            if self.table.stopping.is_set() or resume is None:
                raise DispatchError("chump-tui is stopping")
            _append_line(Path(rec.log_path), run_line(rec.run + 1, rec.run_note))
            handle = resume(Path(rec.worktree), rec.harness, rec.session_id, prompt,
                            Path(rec.log_path), live.output,
                            self.launcher.line_sink(rec.key))
        except Exception as exc:  # this run's failure, never a lost row
            return self._not_started(live, before, exc)
        with self.table.lock:
            rec.outcomes_before += before.outcome is not None
            rec.run += 1
            rec.run_started_at = self.table.clock()
            # --soft-deadline of the console (or the follow-up command) that runs it wins.
            rec.soft_deadline_s = self.config.soft_deadline_s or rec.soft_deadline_s
            if counts == "follow_ups":
                rec.follow_ups += 1
            rec.outcome = None
            rec.ended_at = rec.exited_at = rec.exit_code = rec.kill_deadline = None
            rec.kill_reason = rec.agent_error = ""
            rec.reflection_written = False
            live.exit_seen = None
            self.launcher.attach(live, handle)
            self.table.changed(live, "next run started")
        self.started()
        return None

    def _not_started(self, live: Live, before: _Before, exc: Exception) -> str:
        error = redact(str(exc) if isinstance(exc, DispatchError)
                       else f"{type(exc).__name__}: {exc}")
        with self.table.lock:
            rec = live.record
            rec.run_note = ""
            if before.phase == "killing":  # we stopped its agent for this run
                rec.phase = "running"
                self.outcomes.finish(live, DispatchOutcome.killed(
                    f"stopped for a follow-up that could not start: {error}"))
            else:
                rec.phase = before.phase  # type: ignore[assignment]
                rec.outcome, rec.ended_at = before.outcome, before.ended_at
                rec.reflection_written = before.reflection_written
                self.table.changed(live, "next run failed")
            self.table.idle.notify_all()
        self.table.emit(Notice("error", f"{rec.key}: the next run did not start: {error}"))
        return error


def _append_line(log_path: Path, line: str) -> None:
    """The run's first line, in the log file itself: a re-read log starts the run there."""
    fd = open_nofollow(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)
