"""The monitor's pure brain: deadlines, outcomes and ``decide_tick``.

No I/O here. The engine (``chump_tui.engine``) runs this once per dispatch
per tick. One deliberate change from the reference: while the agent process
still runs, a missed soft deadline is a *warning* (``MarkStalled``) and the
agent stays watched, so it may still open a PR or reach the 2x kill rung;
``Stalled`` is terminal only when no agent process is running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chump_tui.pr_providers import PrStatus

DEFAULT_TICK_S = 30.0
DEFAULT_KILL_GRACE_S = 30.0

_SOFT_DEADLINE_MIN = {"s": 20, "m": 60, "l": 180, "xl": 360}

OutcomeKind = Literal["shipped", "ci_failed", "stalled", "killed"]
OUTCOME_KINDS: tuple[OutcomeKind, ...] = ("shipped", "ci_failed", "stalled", "killed")


def soft_deadline_seconds(effort: str) -> int:
    """Soft deadline by effort: s 20 min, m 60, l 180, xl 360, anything else 60."""
    return _SOFT_DEADLINE_MIN.get(effort.lower(), 60) * 60


@dataclass(frozen=True)
class DispatchOutcome:
    """Terminal outcome of one dispatch attempt."""

    kind: OutcomeKind
    pr_number: int | None = None
    reason: str = ""

    @classmethod
    def shipped(cls, pr: int) -> DispatchOutcome:
        return cls("shipped", pr)

    @classmethod
    def ci_failed(cls, pr: int) -> DispatchOutcome:
        return cls("ci_failed", pr)

    @classmethod
    def stalled(cls) -> DispatchOutcome:
        return cls("stalled")

    @classmethod
    def killed(cls, reason: str) -> DispatchOutcome:
        return cls("killed", None, reason)

    def debug(self) -> str:
        """The reference's Rust ``{:?}`` rendering, e.g. ``Shipped(42)``."""
        if self.kind == "shipped":
            return f"Shipped({self.pr_number})"
        if self.kind == "ci_failed":
            return f"CiFailed({self.pr_number})"
        if self.kind == "stalled":
            return "Stalled"
        escaped = self.reason.replace("\\", "\\\\").replace('"', '\\"')
        return f'Killed("{escaped}")'


@dataclass(frozen=True)
class KeepGoing:
    pass


@dataclass(frozen=True)
class MarkStalled:
    """Past the soft deadline with no PR while the agent still runs: warn, keep watching."""


@dataclass(frozen=True)
class Done:
    outcome: DispatchOutcome


@dataclass(frozen=True)
class KillThenDone:
    reason: str


TickDecision = KeepGoing | MarkStalled | Done | KillThenDone


def decide_tick(
    pr: PrStatus | None,
    started_at: float,
    now: float,
    soft_deadline_s: float,
    child_exit_code: int | None,
    agent_running: bool = False,
) -> TickDecision:
    """Next action for one dispatch, from its PR, clock and process state."""
    if child_exit_code is not None and child_exit_code != 0:
        return Done(DispatchOutcome.killed(f"exit code {child_exit_code}"))
    if pr is not None:
        state = pr.state.upper()
        if state == "MERGED":
            return Done(DispatchOutcome.shipped(pr.number))
        if state == "CLOSED":
            return Done(DispatchOutcome.ci_failed(pr.number))
        # An OPEN PR belongs to the merge queue and the humans: never stall or kill it.
        return KeepGoing()
    elapsed = max(0.0, now - started_at)
    if elapsed > 2 * soft_deadline_s:
        return KillThenDone(f"soft-deadline exceeded ({_secs(soft_deadline_s)}s × 2)")
    if elapsed > soft_deadline_s:
        return MarkStalled() if agent_running else Done(DispatchOutcome.stalled())
    return KeepGoing()


def _secs(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
