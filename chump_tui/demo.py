"""``--demo``: a bundled backlog, simulated agents (real subprocesses) and a simulated GitHub.

Nothing here needs git, claude or gh. Each demo gap carries a ``demo:`` field
(scenario and seconds) that tells its simulated agent how to end, so a
newcomer sees every outcome within a couple of minutes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog
from chump_tui.backlog import Backlog, Gap, load_backlog
from chump_tui.pr_providers import PrStatus, match_branches
from chump_tui.spawners import SpawnResult

DEMO_TICK_S = 2.0
DEMO_SOFT_DEADLINE_S = 40.0
DEMO_KILL_GRACE_S = 5.0


def demo_backlog() -> Backlog:
    return load_backlog(Path(str(resources.files("chump_tui") / "fixtures" / "demo-backlog.yaml")))


def make_demo_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="chump-tui-demo-")).resolve()


class SimulatedGitHub:
    """Reads the PR lines demo agents append to a state file; one read per poll."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.calls = 0
        self._lock = threading.Lock()

    def poll(self, branches: Sequence[str]) -> dict[str, PrStatus | None]:
        with self._lock:
            self.calls += 1
        try:
            lines = self.state_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        prs = []
        for i, line in enumerate(lines):
            parts = line.split()
            if len(parts) >= 2:
                prs.append((parts[0], PrStatus(2000 + i, parts[1], parts[2] if len(parts) > 2
                                               else "CLEAN")))
        return match_branches(prs, branches)


class DemoSpawner:
    """Makes a plain directory as the 'worktree' and starts ``chump_tui.demo_agent``."""

    def __init__(self, backlog: list[Gap], state_file: Path) -> None:
        self.by_id = {g.id: g for g in backlog}
        self.state_file = state_file
        self.attempts: dict[str, int] = {}

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        worktree.mkdir(parents=True, exist_ok=True)

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        return "demo: no claim script; claim skipped"

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        gap = self.by_id.get(gap_id)
        spec = gap.extra.get("demo", {}) if gap else {}
        spec = spec if isinstance(spec, dict) else {}
        attempt = self.attempts[gap_id] = self.attempts.get(gap_id, 0) + 1
        # A retried demo agent ships, so the retry flow ends well.
        scenario = str(spec.get("scenario", "shipped")) if attempt == 1 else "shipped"
        seconds = str(spec.get("seconds", 20))
        argv = [sys.executable, "-m", "chump_tui.demo_agent", gap_id, scenario, seconds,
                str(self.state_file)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_package_parent()),
                                                          env.get("PYTHONPATH", "")]))
        return SpawnResult(AgentProcess.spawn(argv, worktree, env, log_path, output, on_line),
                           "demo")


def _package_parent() -> Path:
    return Path(__file__).resolve().parent.parent
