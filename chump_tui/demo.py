"""``--demo``: a bundled backlog, simulated agents (real subprocesses) and a simulated GitHub.

The demo runs in a throwaway git repository, so every worktree is a real ``git worktree``
and every key works on it (diff, shell, remove worktree); it needs no claude and no gh.
Each demo gap carries a ``demo:`` field (scenario and seconds) that tells its simulated
agent how its run goes, so a newcomer sees every state within a couple of minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog
from chump_tui.backlog import Backlog, Gap, load_backlog
from chump_tui.errors import ChumpError
from chump_tui.harness import CLAUDE
from chump_tui.paths import slug
from chump_tui.pr_providers import PrStatus
from chump_tui.spawners import DISPATCH_IDENTITY, RealSpawner, SpawnResult

DEMO_TICK_S = 2.0
DEMO_SOFT_DEADLINE_S = 40.0
DEMO_KILL_GRACE_S = 5.0
DEMO_IDLE_TIMEOUT_S = 20.0
DEMO_PREFIX = "chump-tui-demo-"


def demo_backlog() -> Backlog:
    return load_backlog(Path(str(resources.files("chump_tui") / "fixtures" / "demo-backlog.yaml")))


def make_demo_root() -> Path:
    """A fresh git repository in a temp directory, with ``origin/main`` to branch from."""
    root = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX)).resolve()
    identity = ["-c", "user.name=chump-tui demo", "-c", "user.email=demo@chump.invalid"]
    (root / "README.md").write_text("A throwaway repository for chump-tui --demo.\n")
    (root / ".gitignore").write_text("sessions/\n.claude/\ngithub-state.txt\n")
    steps = [["init", "-q", "-b", "main"], ["add", "README.md", ".gitignore"],
             [*identity, "commit", "-qm", "demo repository"],
             ["update-ref", "refs/remotes/origin/main", "HEAD"]]
    for step in steps:
        try:
            subprocess.run(["git", "-C", str(root), *step], capture_output=True, check=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise ChumpError(f"--demo needs git to make its throwaway repository ({exc})") \
                from None
    return root


def remove_demo_root(root: Path) -> None:
    """Delete a demo's repository (only ever one we made: its name says so)."""
    if root.name.startswith(DEMO_PREFIX) and root.parent == Path(tempfile.gettempdir()).resolve():
        shutil.rmtree(root, ignore_errors=True)


class SimulatedGitHub:
    """Reads the PR lines demo agents append to a state file; one read per poll.

    A branch's PR number is fixed by its first line; its state is its latest line.
    """

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
        numbers: dict[str, int] = {}
        latest: dict[str, PrStatus] = {}
        for line in lines:
            parts = line.split()
            if len(parts) < 2:
                continue
            number = numbers.setdefault(parts[0], 2001 + len(numbers))
            latest[parts[0]] = PrStatus(number, parts[1], parts[2] if len(parts) > 2 else "")
        return {b: latest.get(b) for b in branches}


class DemoSpawner:
    """Real worktrees of the demo's repository; ``chump_tui.demo_agent`` as the agent."""

    def __init__(self, root: Path, backlog: list[Gap], state_file: Path) -> None:
        self.git = RealSpawner(root, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        self.by_id = {g.id: g for g in backlog}
        self.state_file = state_file
        self.attempts: dict[str, int] = {}
        self.harness = "claude"  # its simulated agents speak claude's stream-json
        self.backend = "claude"

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        self.git.create_worktree(worktree, branch, base_ref)

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
        return self._start([gap_id, scenario, seconds, str(self.state_file)], worktree,
                           log_path, output, on_line)

    def resume_agent(self, worktree: Path, harness_name: str, session_id: str, prompt: str,
                     log_path: Path, output: OutputLog,
                     on_line: LineCallback | None) -> SpawnResult:
        """A follow-up or CI repair: the simulated agent goes on with its session and ships."""
        gap_id = next((g.id for g in self.by_id.values() if slug(g.id) == worktree.name),
                      worktree.name)
        return self._start([gap_id, "resumed", "6", str(self.state_file), session_id],
                           worktree, log_path, output, on_line)

    def _start(self, args: list[str], worktree: Path, log_path: Path, output: OutputLog,
               on_line: LineCallback | None) -> SpawnResult:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_package_parent()),
                                                          env.get("PYTHONPATH", "")]))
        env.update(DISPATCH_IDENTITY)
        process = AgentProcess.spawn([sys.executable, "-m", "chump_tui.demo_agent", *args],
                                     worktree, env, log_path, output, on_line, CLAUDE.fmt)
        return SpawnResult(process, "demo", CLAUDE.name)


def _package_parent() -> Path:
    return Path(__file__).resolve().parent.parent
