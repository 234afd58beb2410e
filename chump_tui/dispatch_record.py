"""The dispatch table row: one attempt at one gap, as the UI, summary and state file see it."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from chump_tui.monitor import DispatchOutcome
from chump_tui.pr_providers import PrStatus

Phase = Literal["dispatching", "running", "stalled", "killing", "ended", "spawn_failed"]
ACTIVE_PHASES: tuple[Phase, ...] = ("dispatching", "running", "stalled", "killing")


@dataclass
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dispatch:
        """Rebuild a row from the state file; unknown keys (a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("pr"), dict):
            values["pr"] = PrStatus(**values["pr"])
        if isinstance(values.get("outcome"), dict):
            values["outcome"] = DispatchOutcome(**values["outcome"])
        return cls(**values)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def retryable(self) -> bool:
        if self.phase == "spawn_failed":
            return True
        return self.phase == "ended" and (self.outcome is None or self.outcome.kind != "shipped")

    def duration_s(self, now: float) -> float:
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at)

    def label(self) -> str:
        """The state as the console shows it (RUNNING, PR OPEN #n, SHIPPED, …)."""
        if self.phase == "dispatching":
            return "DISPATCHING"
        if self.phase == "spawn_failed":
            return "SPAWN-FAILED"
        if self.phase == "killing":
            return "KILLING"
        if self.phase == "ended" and self.outcome is not None:
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
        if self.phase == "spawn_failed":
            return self.error
        if self.outcome is None:
            return self.kill_reason
        if self.outcome.kind == "killed":
            return self.outcome.reason
        if self.outcome.kind == "stalled":
            return "no PR within soft deadline"
        return f"PR #{self.outcome.pr_number}"
