"""Watchdogs for agents that go quiet: no first output, or no output for long.

``check`` is pure: from when the agent started, its first and last event, and when
its descendants were last seen busy, it says nothing, ``Quiet`` (a warning once half
the threshold passed) or ``Kill``. ``BusyProbe`` looks at an agent's descendant
processes: one that used CPU since the last look (a build, a test run) means the
agent is working though it prints nothing. It is asked only about agents already
quiet, so a fleet of chatty agents costs no process-table scans.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_FIRST_OUTPUT_TIMEOUT_S = 120.0
DEFAULT_IDLE_TIMEOUT_S = 600.0
BUSY_CPU_S = 0.02
"""CPU seconds a descendant must use between two looks to count as busy."""


@dataclass(frozen=True)
class Quiet:
    seconds: float
    threshold: float
    first: bool  # nothing at all since the start


@dataclass(frozen=True)
class Kill:
    reason: str


def check(started_at: float, first_event_at: float | None, last_event_at: float | None,
          now: float, first_timeout_s: float, idle_timeout_s: float,
          busy_at: float | None = None) -> Quiet | Kill | None:
    first = first_event_at is None
    since = started_at if first or last_event_at is None else last_event_at
    threshold = first_timeout_s if first else idle_timeout_s
    if threshold <= 0:
        return None
    if busy_at is not None:
        since = max(since, busy_at)
    quiet = now - since
    if quiet >= threshold:
        return Kill(f"no output for {threshold:g}s")
    if quiet >= threshold / 2:
        return Quiet(quiet, threshold, first)
    return None


class BusyProbe:
    """Whether an agent's descendants used CPU since the previous look (psutil: Linux, macOS)."""

    def __init__(self) -> None:
        self._seen: dict[int, dict[tuple[int, float], float]] = {}

    def busy(self, root_pid: int) -> bool:
        import psutil

        try:
            children = psutil.Process(root_pid).children(recursive=True)
        except psutil.Error:
            self._seen.pop(root_pid, None)
            return False
        sample: dict[tuple[int, float], float] = {}
        for child in children:
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    sample[(child.pid, child.create_time())] = times.user + times.system
            except psutil.Error:
                continue
        before = self._seen.get(root_pid, {})
        self._seen[root_pid] = sample
        return any(cpu - before.get(key, cpu if not before else 0.0) >= BUSY_CPU_S
                   for key, cpu in sample.items())

    def forget(self, root_pid: int) -> None:
        self._seen.pop(root_pid, None)
