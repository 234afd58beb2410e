"""The engine's settings and the numbers its parts share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chump_tui.events import EngineEvent
from chump_tui.monitor import DEFAULT_KILL_GRACE_S, DEFAULT_TICK_S
from chump_tui.watchdog import DEFAULT_FIRST_OUTPUT_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S

Listener = Callable[[EngineEvent], None]

ENDED_TAIL_LINES = 20
"""Output lines kept in memory for an attempt that is over and reflected."""

KEEP_OUTPUT_OF_ENDED = 100
"""Reflected attempts that keep even those lines; older ones keep only their row (their log
files keep everything): memory stays flat over hours of continuous mode."""

FAILED_STILL_RUNNING_S = 15.0
"""An agent whose harness reported its run failed, and that neither exits nor does anything
more for this long, is stopped (some CLIs hang after a failed turn)."""

EVALUATE_EVERY_S = 1.0
"""The monitor thread decides at least this often (deadlines, watchdogs, exits)."""


@dataclass
class EngineConfig:
    base_ref: str = "origin/main"
    max_parallel: int = 2
    tick_s: float = DEFAULT_TICK_S
    kill_grace_s: float = DEFAULT_KILL_GRACE_S
    soft_deadline_s: float | None = None  # overrides the effort table
    log_dir: Path | None = None
    environ: Mapping[str, str] | None = None  # None: no depth check (test spawners)
    continuous: bool = False
    first_output_timeout_s: float = DEFAULT_FIRST_OUTPUT_TIMEOUT_S  # 0: off
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S  # 0: off
    include_shipped: bool = False  # gaps whose branch has a merged PR are pickable too
    fix_ci: int = 0  # CI repairs per attempt when its PR's checks fail (0: the reference's)
    budget_usd: float | None = None  # per attempt, every run of it
    budget_tokens: int | None = None  # per attempt, where no dollars are known
    fleet_budget_usd: float | None = None  # the session's attempts together
    budget_action: str = "stop"  # at 100 %: "stop" the attempt, or only "warn"


def default_log_dir(repo_root: Path) -> Path:
    return repo_root / "sessions" / "chump-tui" / "logs"
