"""The dispatch table row: one attempt at one gap, as the UI, summary and state file see it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from chump_tui import numbers
from chump_tui.monitor import OUTCOME_KINDS, DispatchOutcome
from chump_tui.pr_providers import PrStatus

Phase = Literal["dispatching", "running", "stalled", "killing", "ended", "spawn_failed"]
PHASES: tuple[Phase, ...] = ("dispatching", "running", "stalled", "killing", "ended",
                             "spawn_failed")
ACTIVE_PHASES: tuple[Phase, ...] = ("dispatching", "running", "stalled", "killing")


LOST_PREFIX = "LOST ("
"""Killed("LOST (host h silent 20s)"): the outcome of an agent whose host went silent."""


@dataclass(slots=True)  # thousands of rows after hours of continuous mode: no __dict__ each
class Dispatch:
    key: str  # "<gap id>#<attempt>"
    gap_id: str
    title: str
    priority: str
    effort: str
    branch: str
    worktree: str
    attempt: int
    started_at: float
    soft_deadline_s: float
    phase: Phase = "dispatching"
    backend: str = ""
    pid: int | None = None
    process_start: float | None = None
    exit_code: int | None = None
    pr: PrStatus | None = None
    outcome: DispatchOutcome | None = None
    ended_at: float | None = None
    error: str = ""
    note: str = ""
    kill_reason: str = ""
    kill_deadline: float | None = None
    reflection_written: bool = False
    log_path: str = ""
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # unique across sessions
    # Earlier attempts' merged/closed PRs on this branch: never this attempt's outcome.
    stale_prs: list[int] = field(default_factory=list)
    harness: str = ""  # whose event stream the agent writes ('' : plain text)
    turns: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None  # only where the harness reports it
    agent_error: str = ""  # an error result or failed turn the agent reported
    host: str = ""  # the fleet host that runs it ('' : this machine)
    remote: str = ""  # "<worker id>/<request uid>" of a fleet agent
    tool_errors: int | None = None  # tool calls that failed (its harness said so)
    model: str = ""  # the model its harness named (prices an estimate where none is said)
    exited_at: float | None = None  # its agent process ended (it may still wait for a PR)
    worktree_removed: bool = False  # x removed its worktree (the branch is kept)
    # A conversation goes on in runs: the first, then each follow-up or CI repair resumes
    # its harness's session in the same worktree, on the same card, as the next run.
    session_id: str = ""  # its harness's session (what a follow-up resumes)
    run: int = 1
    run_note: str = ""  # what started the current run: "follow-up 2", "fixing CI (1/2)"
    run_started_at: float | None = None  # its deadlines and watchdogs count from here
    follow_ups: int = 0
    ci_repairs: int = 0
    repaired_head: str = ""  # the PR head whose failed checks a repair was last given
    outcomes_before: int = 0  # runs that ended the attempt before (each one reflected)
    # The numbers of the runs before this one (the row's totals add this run's to them).
    earlier_turns: int = 0
    earlier_tokens_in: int = 0
    earlier_tokens_out: int = 0
    earlier_tool_errors: int = 0
    earlier_cost_usd: float | None = None
    first_run_cost_usd: float | None = None  # what the first run cost (the rest: follow-ups)
    budget_note: str = ""  # "budget 83% of $0.50", "budget $0.50 reached"
    # A fleet dispatch not sent yet or being sent again: what it waits for (QUEUED).
    waiting: str = ""
    taken_by: str = ""  # another session held the gap: not a failure of this one (TAKEN)

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every field and was most of a save.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["pr"] = ({**vars(self.pr), "failed_checks": list(self.pr.failed_checks),
                       "failed_runs": list(self.pr.failed_runs)}
                      if self.pr is not None else None)
        data["outcome"] = vars(self.outcome).copy() if self.outcome is not None else None
        data["stale_prs"] = list(self.stale_prs)
        return data

    @classmethod
    def from_json(cls, data: object) -> Dispatch:
        """Rebuild a row from the state file, checking every field's shape.

        Raises ValueError naming the first field that is wrong. Unknown keys (a newer
        version) are ignored.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a dispatch is a {type(data).__name__}, expected an object")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.name in _REQUIRED:
                    raise ValueError(f"a dispatch has no {f.name!r}")
                continue
            values[f.name] = _checked(f.name, data[f.name])
        if isinstance(values.get("pr"), dict):
            pr = dict(values["pr"])
            pr["failed_checks"] = tuple(pr.get("failed_checks", ()))
            pr["failed_runs"] = tuple(pr.get("failed_runs", ()))
            values["pr"] = PrStatus(**pr)
        if isinstance(values.get("outcome"), dict):
            values["outcome"] = DispatchOutcome(**values["outcome"])
        return cls(**values)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def waiting_for_pr(self) -> bool:
        """Its agent exited cleanly without a PR yet: watched until its deadline, no slot."""
        return self.phase in ("running", "stalled") and self.exit_code == 0

    @property
    def lost(self) -> bool:
        """Ended because its fleet host went silent (the agent may live on there)."""
        return (self.outcome is not None and self.outcome.kind == "killed"
                and self.outcome.reason.startswith(LOST_PREFIX))

    @property
    def failed_to_start(self) -> bool:
        """A dispatch that failed (one another session's claim stopped is not a failure)."""
        return self.phase == "spawn_failed" and not self.taken_by

    @property
    def retryable(self) -> bool:
        if self.phase == "spawn_failed" or self.waiting_for_pr:
            return True
        return self.phase == "ended" and (self.outcome is None or self.outcome.kind != "shipped")

    def duration_s(self, now: float) -> float:
        """How long its agent worked: to its exit, or to the outcome if that came first
        (a merge while it was still finishing); an attempt waiting for its PR stops growing
        once its agent exited."""
        return self._worked_since(self.started_at, now)

    def _worked_since(self, start: float, now: float) -> float:
        ends = [t for t in (self.exited_at, self.ended_at) if t is not None]
        return max(0.0, (min(ends) if ends else now) - start)

    def later_runs_cost(self) -> float | None:
        """What its follow-ups and CI repairs cost (as its harness said), None if none did."""
        if self.run == 1 or self.cost_usd is None:
            return None
        return max(0.0, self.cost_usd - (self.first_run_cost_usd or 0.0))

    def run_duration_s(self, now: float) -> float:
        """How long the current run has worked: the attempt's first run, or a follow-up or
        CI repair since it started (its deadlines count from there)."""
        return self._worked_since(self.run_started_at or self.started_at, now)

    def label(self) -> str:
        """The state as the console shows it (RUNNING, PR OPEN #n, SHIPPED, …)."""
        if self.phase == "dispatching":
            return "QUEUED" if self.waiting else "DISPATCHING"
        if self.phase == "spawn_failed":
            return "TAKEN" if self.taken_by else "SPAWN-FAILED"
        if self.phase == "killing":
            return "KILLING"
        if self.phase == "ended" and self.outcome is not None:
            if self.lost:
                return "LOST"
            if self.outcome.kind == "killed" and self.outcome.reason.startswith("exit code "):
                # Killed("exit code N") in the reference's words, but nobody killed it.
                return "EXITED " + self.outcome.reason.removeprefix("exit code ")
            return {"shipped": "SHIPPED", "ci_failed": "CI-FAILED", "stalled": "STALLED",
                    "killed": "KILLED"}[self.outcome.kind]
        if self.phase == "stalled":
            return "STALLED"
        if self.pr is not None and self.pr.state == "OPEN":
            return f"PR OPEN #{self.pr.number}"
        if self.exit_code == 0:
            return "EXITED, NO PR"
        return "RUNNING"

    def reason(self) -> str:
        if self.phase == "dispatching":
            return self.waiting
        if self.phase == "spawn_failed":
            return self.error
        if self.outcome is None:
            return self.kill_reason
        if self.lost:  # the label says LOST: "host w1 silent 20s"
            return self.outcome.reason.removeprefix(LOST_PREFIX).removesuffix(")")
        if self.outcome.kind == "killed":
            if self.agent_error and self.outcome.reason.startswith("exit code"):
                return f"{self.outcome.reason}: {self.agent_error}"
            if self.agent_error and self.agent_error not in self.outcome.reason:
                return f"{self.outcome.reason}; the agent had said: {self.agent_error}"
            return self.outcome.reason
        if self.outcome.kind == "stalled":
            said = f"; the agent said: {self.agent_error}" if self.agent_error else ""
            what = "exited without a PR" if self.exit_code == 0 else "no PR within soft deadline"
            return what + said
        if self.outcome.kind == "ci_failed":
            checks = self.pr.failed_checks if self.pr is not None else ()
            return (f"PR #{self.outcome.pr_number} closed; checks failed: {', '.join(checks)}"
                    if checks else f"PR #{self.outcome.pr_number} closed without merging")
        return f"PR #{self.outcome.pr_number}"


_FIELD_NAMES = tuple(f.name for f in fields(Dispatch))

# ------------------------------------------------------------------ state-file shapes
_REQUIRED = ("key", "gap_id", "branch", "worktree", "attempt", "started_at", "soft_deadline_s")
_STR = ("key", "gap_id", "title", "priority", "effort", "branch", "worktree", "backend",
        "error", "note", "kill_reason", "log_path", "uid", "harness", "agent_error", "host",
        "remote", "model", "session_id", "run_note", "repaired_head", "budget_note", "waiting",
        "taken_by")
# Every number is checked for its value, not only its type: a row with pid -1 or a start
# time of -1e308 would crash the first look at it (psutil, a duration), at every start.
_NUMBERS: dict[str, Callable[[object], object]] = {
    "started_at": numbers.timestamp, "soft_deadline_s": numbers.positive_duration,
    "attempt": numbers.attempt, "run": numbers.attempt, "follow_ups": numbers.count,
    "ci_repairs": numbers.count, "outcomes_before": numbers.count, "earlier_turns": numbers.count,
    "earlier_tokens_in": numbers.count, "earlier_tokens_out": numbers.count,
    "earlier_tool_errors": numbers.count,
}
_OPTIONAL_NUMBERS: dict[str, Callable[[object], object]] = {
    "process_start": numbers.timestamp, "ended_at": numbers.timestamp,
    "kill_deadline": numbers.timestamp, "cost_usd": numbers.cost, "pid": numbers.pid,
    "exit_code": numbers.exit_code, "turns": numbers.count, "tokens_in": numbers.count,
    "tokens_out": numbers.count, "tool_errors": numbers.count, "exited_at": numbers.timestamp,
    "run_started_at": numbers.timestamp, "earlier_cost_usd": numbers.cost,
    "first_run_cost_usd": numbers.cost,
}
MAX_STALE_PRS = 1000


def _checked(name: str, value: Any) -> Any:
    """``value`` when it has the shape and a usable value for field ``name``, else
    ValueError naming the field."""
    ok: bool
    if name in _STR:
        ok = isinstance(value, str)
    elif name in _NUMBERS:
        ok = _NUMBERS[name](value) is not None
    elif name in _OPTIONAL_NUMBERS:
        ok = value is None or _OPTIONAL_NUMBERS[name](value) is not None
    elif name == "phase":
        ok = value in PHASES
    elif name in ("reflection_written", "worktree_removed"):
        ok = isinstance(value, bool)
    elif name == "stale_prs":
        ok = (isinstance(value, list) and len(value) <= MAX_STALE_PRS
              and all(numbers.pr_number(v) is not None for v in value))
    elif name == "pr":
        ok = value is None or (isinstance(value, dict) and set(value) <= _PR_KEYS
                               and numbers.pr_number(value.get("number")) is not None
                               and isinstance(value.get("state"), str)
                               and isinstance(value.get("merge_state_status", ""), str)
                               and isinstance(value.get("failed_checks", []), list)
                               and all(isinstance(c, str) for c in value.get("failed_checks", []))
                               and (value.get("created_at") is None
                                    or numbers.timestamp(value.get("created_at")) is not None)
                               and isinstance(value.get("head_sha", ""), str)
                               and isinstance(value.get("failed_runs", []), list)
                               and all(numbers.int_in(r, 1, 2**63 - 1) is not None
                                       for r in value.get("failed_runs", [])))
    elif name == "outcome":
        ok = value is None or (isinstance(value, dict) and set(value) <= _OUTCOME_KEYS
                               and value.get("kind") in OUTCOME_KINDS
                               and (value.get("pr_number") is None
                                    or numbers.pr_number(value.get("pr_number")) is not None)
                               and isinstance(value.get("reason", ""), str))
    else:
        ok = True
    if not ok:
        shown = repr(value) if isinstance(value, int | float) else type(value).__name__
        raise ValueError(f"field {name!r} is unusable ({shown[:40]})")
    return value


_PR_KEYS = {"number", "state", "merge_state_status", "failed_checks", "created_at", "head_sha",
            "failed_runs"}
_OUTCOME_KEYS = {"kind", "pr_number", "reason"}


def fmt_duration(seconds: float) -> str:
    """``05:07`` or ``1:02:03``: every duration the console, plain mode and exports show."""
    seconds = numbers.whole_seconds(seconds)  # whatever a caller subtracted: never raises
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
