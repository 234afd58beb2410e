"""A worker's own health: whether it may take work, and what it does when cut off.

**Degraded.** A host that fails ``degrade_after`` starts in a row (a read-only repository
root, a full disk, a broken git) or cannot fetch origin would otherwise answer fastest and
swallow every request. It says why in its presence record (``degraded``), takes no request
until a probe succeeds (``git fetch`` works and a directory can be made where its worktrees
go), and consoles dispatch elsewhere meanwhile.

**Fenced.** A console gives a silent worker's agents up as LOST after four heartbeats and
may run their gaps on another host. A worker that could not renew its presence for two
heartbeats pauses (SIGSTOP) or stops its agents before that can happen, so two agents
never work one gap at once: both windows are measured from the last presence record the
broker took, the console's only from when it read it, so the worker's always ends first.
A paused agent goes on (SIGCONT) once a presence record is taken again and its claim is
still its own; one whose gap is held by another session by then is stopped, and one whose
claim was freed (its console gave it up) waits, paused, for its console to take it back.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from chump_tui.agent_process import AgentProcess
from chump_tui.outside_text import one_line

DEFAULT_DEGRADE_AFTER = 3
DEFAULT_PROBE_EVERY_S = 30.0
FENCE_HEARTBEATS = 2.0  # the worker's window; a console's is 4 (remote.FleetClient)
FENCE_MODES = ("pause", "stop")


class HostHealth:
    """Consecutive start failures and the degraded state they lead to."""

    def __init__(self, probe: Callable[[], str | None], log: Callable[[str], None],
                 degrade_after: int = DEFAULT_DEGRADE_AFTER,
                 probe_every_s: float = DEFAULT_PROBE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.probe = probe  # None when the host can work, else what is wrong
        self.log = log
        self.degrade_after = degrade_after
        self.probe_every_s = probe_every_s
        self.clock = clock
        self.failures = 0
        self.reason = ""  # why it takes no work ("" : healthy)
        self._next_probe = 0.0

    def started(self) -> None:
        self.failures = 0

    def start_failed(self, why: str) -> None:
        self.failures += 1
        if self.failures >= self.degrade_after:
            self.degrade(f"{self.failures} starts failed in a row (last: {one_line(why, 200)})")

    def cannot_fetch(self, why: str) -> None:
        self.degrade(f"git fetch origin failed ({one_line(why, 200)}); its base would be stale")

    def degrade(self, reason: str) -> None:
        if not self.reason:
            self.log(f"degraded: {reason}; taking no work until a probe succeeds "
                     f"(every {self.probe_every_s:g}s)")
        self.reason = reason
        self._next_probe = self.clock() + self.probe_every_s

    def may_take_work(self) -> bool:
        """Healthy, or degraded and a probe due now succeeds."""
        if not self.reason:
            return True
        if self.clock() < self._next_probe:
            return False
        problem = self.probe()
        if problem is not None:
            self.reason = f"{self.reason.split('; probe:')[0]}; probe: {one_line(problem, 200)}"
            self._next_probe = self.clock() + self.probe_every_s
            return False
        self.log(f"healthy again (the probe succeeded); was: {self.reason}")
        self.reason = ""
        self.failures = 0
        return True


class Fence:
    """Pauses or stops a worker's agents while its presence cannot be renewed."""

    def __init__(self, heartbeat_s: float, mode: str,
                 agents: Callable[[], list[tuple[str, AgentProcess]]],
                 stop: Callable[[str, AgentProcess], None], log: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert mode in FENCE_MODES
        self.after_s = FENCE_HEARTBEATS * heartbeat_s
        self.mode = mode
        self.agents = agents  # (uid, process) of the agents running now
        self.stop_agent = stop
        self.log = log
        self.clock = clock
        self.renewed_at = clock()
        self.paused: dict[str, AgentProcess] = {}
        self.fenced = False
        self._lock = threading.Lock()

    def renewed(self) -> None:
        """A presence record was taken by the broker."""
        self.renewed_at = self.clock()

    def cut_off_for(self) -> float:
        return self.clock() - self.renewed_at

    def check(self) -> None:
        """Fence once the window passed (called every fraction of a second, on a thread of
        its own: a broker call that hangs must not delay it)."""
        quiet = self.cut_off_for()
        with self._lock:
            if self.fenced or quiet < self.after_s:
                return
            running = self.agents()
            self.fenced = True
            if not running:
                return
            self.log(f"cut off from the broker for {quiet:.0f}s: "
                     f"{'pausing' if self.mode == 'pause' else 'stopping'} {len(running)} "
                     f"agent(s) before a console gives them up (at {2 * self.after_s:g}s)")
            for uid, process in running:
                if self.mode == "pause":
                    process.signal_group(signal.SIGSTOP)
                    self.paused[uid] = process
                else:
                    self.stop_agent(uid, process)

    def lift(self, still_ours: Callable[[str], bool]) -> None:
        """Presence renewed: paused agents whose claims are still theirs go on; the others
        are the claim check's (``Worker._check_claims``): stopped, or kept paused until
        their consoles take them back."""
        with self._lock:
            if not self.fenced:
                return
            self.fenced = False
            paused, self.paused = self.paused, {}
        resumed = 0
        for uid, process in paused.items():
            if still_ours(uid):
                process.signal_group(signal.SIGCONT)
                resumed += 1
        if paused:
            self.log(f"back in touch with the broker: {resumed} agent(s) resumed, "
                     f"{len(paused) - resumed} not (their gaps went elsewhere, or wait for "
                     "their consoles to take them back)")

    def is_paused(self, uid: str) -> bool:
        with self._lock:
            return uid in self.paused
