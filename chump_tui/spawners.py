"""How a gap becomes a running agent: worktree, claim, backend process.

``Spawner`` is the seam the dispatcher drives (create_worktree -> claim_gap ->
spawn_agent). ``RealSpawner`` shells out to git, the repo's claim script and
the claude / chump-local backend; ``CHUMP_FAULT_INJECT`` swaps the backend for
real ``sh`` children that fail in known ways. Every external call is an argv
list (never a shell string) with a timeout.
"""

from __future__ import annotations

import contextlib
import enum
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog
from chump_tui.errors import DispatchError
from chump_tui.harness import (
    DEFAULT_HARNESS,
    MAX_PROMPT_ARG_BYTES,
    Harness,
    harness_named,
    resolve_bin,
    resolve_harness,
    usable_session_id,
)
from chump_tui.leftovers import MARK, mark_ours, our_branches
from chump_tui.prompt import RULES_FILE
from chump_tui.safe_fs import open_nofollow
from chump_tui.steps import StepCancelled, StepRunner, StepTimeout

GIT_TIMEOUT_S = 120.0
CLAIM_SCRIPTS = (Path("scripts/gap-claim.sh"), Path("scripts/coord/gap-claim.sh"))
DISPATCH_IDENTITY = {
    "GIT_AUTHOR_NAME": "Chump Dispatched",
    "GIT_AUTHOR_EMAIL": "chump-dispatch@chump.bot",
    "GIT_COMMITTER_NAME": "Chump Dispatched",
    "GIT_COMMITTER_EMAIL": "chump-dispatch@chump.bot",
}


class FaultMode(enum.Enum):
    SPAWN_FAIL = "spawn_fail"
    EXIT_1 = "exit_1"
    EXIT_0_NO_PR = "exit_0_no_pr"
    MONITOR_TIMEOUT = "monitor_timeout"


_FAULT_SCRIPTS = {
    FaultMode.EXIT_1: "sleep 0.1; exit 1",
    FaultMode.EXIT_0_NO_PR: "sleep 0.1; exit 0",
    FaultMode.MONITOR_TIMEOUT: "sleep 3600",
}


def active_fault_mode(environ: Mapping[str, str]) -> FaultMode | None:
    """First recognised token of ``CHUMP_FAULT_INJECT`` (comma list), else None."""
    for token in environ.get("CHUMP_FAULT_INJECT", "").split(","):
        try:
            return FaultMode(token.strip())
        except ValueError:
            continue
    return None


def resolve_backend(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(backend label, warning or None) from ``CHUMP_DISPATCH_BACKEND``."""
    raw = environ.get("CHUMP_DISPATCH_BACKEND", "").strip()
    if raw in ("", "claude"):
        return "claude", None
    if raw in ("chump-local", "chump_local", "local"):
        return "chump-local", None
    return "claude", (
        f"unknown CHUMP_DISPATCH_BACKEND={raw!r}; falling back to 'claude' "
        "(valid: claude | chump-local)"
    )


def resolve_chump_local_bin(worktree: Path, environ: Mapping[str, str]) -> str:
    explicit = environ.get("CHUMP_LOCAL_BIN")
    if explicit:
        return explicit
    probe = worktree
    for _ in range(5):
        for build in ("release", "debug"):
            candidate = probe / "target" / build / "chump"
            if candidate.is_file():
                return str(candidate)
        if probe.parent == probe:
            break
        probe = probe.parent
    return "chump"


def agent_env(environ: Mapping[str, str], backend: str) -> dict[str, str]:
    env = dict(environ)
    env["CHUMP_DISPATCH_DEPTH"] = "1"
    env.update(DISPATCH_IDENTITY)
    if backend == "chump-local":
        env["CHUMP_DISPATCH_BACKEND_LABEL"] = "chump-local"
    return env


@dataclass
class SpawnResult:
    """What a spawner started: a process (None for in-process test agents)."""

    process: AgentProcess | None
    backend: str
    harness: str = ""  # whose event stream the output is ('' : plain text)
    host: str = ""  # a fleet host ('' : this machine)
    remote: str = ""  # "<worker id>/<request uid>" of a fleet agent


class Spawner(Protocol):
    """The three dispatch steps; each raises DispatchError to abort the rest. A spawner
    that can resume an agent's conversation (a follow-up, a CI repair) also has
    ``resume_agent`` (see ``RealSpawner``); the engine asks for it by name."""

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None: ...

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        """Claim the gap; return a note when the claim was skipped."""
        ...

    def spawn_agent(
        self,
        worktree: Path,
        gap_id: str,
        prompt: str,
        log_path: Path,
        output: OutputLog,
        on_line: LineCallback | None,
    ) -> SpawnResult: ...


class RealSpawner:
    """git worktree + the repo's claim script + the agent: a harness (claude, codex,
    opencode, gemini; a gap's ``harness:`` key picks its own) or the chump-local backend."""

    def __init__(
        self,
        repo_root: Path,
        environ: Mapping[str, str],
        harness: str = DEFAULT_HARNESS,
        gap_harness: Mapping[str, str] | None = None,
    ) -> None:
        self.repo_root = repo_root
        self.environ = dict(environ)
        self.backend, self.backend_warning = resolve_backend(self.environ)
        self.harness = harness
        self.gap_harness = dict(gap_harness or {})
        self.steps = StepRunner()

    def harness_for(self, gap_id: str) -> Harness:
        """Raises DispatchError for a harness name nobody knows."""
        try:
            return resolve_harness(self.gap_harness.get(gap_id, self.harness))
        except ValueError as exc:
            raise DispatchError(f"gap {gap_id}: {exc}") from None

    def preflight(self, gap_id: str, prompt: str) -> None:
        """Refuse, before anything is created, what this gap's agent cannot be given."""
        if self.backend != "claude" or active_fault_mode(self.environ) is not None:
            return  # chump-local takes no prompt; fault children neither
        harness = self.harness_for(gap_id)
        size = len(prompt.encode("utf-8"))
        if size > MAX_PROMPT_ARG_BYTES and not harness.prompt_on_stdin:
            raise DispatchError(
                f"{RULES_FILE}: the prompt is {size // 1024} KiB; {harness.name} takes it only "
                f"as one argument, limited to {MAX_PROMPT_ARG_BYTES // 1024} KiB")

    def cancel(self) -> None:
        """End a running git or claim step and refuse new ones (the console is quitting)."""
        self.steps.cancel()

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        """A new branch from ``base_ref``, marked ours; or, for a branch an earlier attempt
        of ours left, that branch again (its worktree reused when it is still there)."""
        if (worktree / ".git").exists() and self._branch_of(worktree) == branch:
            return  # a retry, or a leftover worktree of ours: its uncommitted work too
        worktree.parent.mkdir(parents=True, exist_ok=True)
        git = ["git", "-C", str(self.repo_root)]
        if self._branch_exists(branch):
            if branch not in our_branches(self.repo_root):
                raise DispatchError(f"branch {branch} exists and was not made by chump-tui; "
                                    f"delete it (git branch -D {branch}) or adopt it (git "
                                    f"config branch.{branch}.{MARK} adopted)")
            self._run_step([*git, "worktree", "prune"], cwd=self.repo_root,
                           what="git worktree prune")
            self._run_step([*git, "worktree", "add", str(worktree), branch], cwd=self.repo_root,
                           what=f"git worktree add {worktree} (continuing {branch})")
            return
        self._run_step([*git, "worktree", "add", str(worktree), "-b", branch, base_ref],
                       cwd=self.repo_root, what=f"git worktree add {worktree}")
        mark_ours(self.repo_root, branch, time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def _branch_exists(self, branch: str) -> bool:
        try:
            done = self.steps.run(["git", "-C", str(self.repo_root), "rev-parse", "--verify",
                                   "--quiet", f"refs/heads/{branch}"], self.repo_root,
                                  self.environ, GIT_TIMEOUT_S)
        except (StepTimeout, StepCancelled, OSError):
            return False
        return done.returncode == 0

    def _branch_of(self, worktree: Path) -> str:
        try:
            done = self.steps.run(["git", "-C", str(worktree), "rev-parse", "--abbrev-ref",
                                   "HEAD"], worktree, self.environ, GIT_TIMEOUT_S)
        except (StepTimeout, StepCancelled, OSError):
            return ""
        return done.stdout.decode("utf-8", errors="replace").strip()

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        script = next((worktree / s for s in CLAIM_SCRIPTS if (worktree / s).is_file()), None)
        if script is None:
            return "no claim script (scripts/gap-claim.sh); claim skipped"
        self._run_step(["bash", str(script), gap_id], cwd=worktree, what=f"{script.name} {gap_id}")
        return None

    def _run_step(self, argv: list[str], cwd: Path, what: str) -> None:
        try:
            done = self.steps.run(argv, cwd, self.environ, GIT_TIMEOUT_S)
        except StepTimeout:
            raise DispatchError(f"{what}: timed out after {GIT_TIMEOUT_S:.0f}s") from None
        except StepCancelled:
            raise DispatchError(f"{what}: stopped (chump-tui is quitting)") from None
        except OSError as exc:
            raise DispatchError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            detail = _last_line(done.stderr) or _last_line(done.stdout) or "no output"
            raise DispatchError(f"{what} failed (exit {done.returncode}): {detail}")

    def spawn_agent(
        self,
        worktree: Path,
        gap_id: str,
        prompt: str,
        log_path: Path,
        output: OutputLog,
        on_line: LineCallback | None,
    ) -> SpawnResult:
        fault = active_fault_mode(self.environ)
        if fault is not None:
            return SpawnResult(spawn_fault_process(fault, worktree, log_path, output, on_line),
                               self.backend)
        env = agent_env(self.environ, self.backend)
        harness = None
        stdin_path = None
        if self.backend == "chump-local":
            argv = [resolve_chump_local_bin(worktree, self.environ), "--execute-gap", gap_id]
        else:
            harness = self.harness_for(gap_id)
            binary = resolve_bin(harness, self.repo_root, self.environ)
            if len(prompt.encode("utf-8")) > MAX_PROMPT_ARG_BYTES and harness.prompt_on_stdin:
                stdin_path = write_prompt_file(log_path, prompt)
                argv = harness.argv(binary, None)
            else:
                argv = harness.argv(binary, prompt)
        try:
            process = AgentProcess.spawn(argv, worktree, env, log_path, output, on_line,
                                         harness.fmt if harness else None, stdin_path)
        except OSError as exc:
            target = exc.filename or argv[0]
            what = harness.name if harness is not None else self.backend
            raise DispatchError(
                f"cannot start {what} agent ({target}): {exc.strerror or exc}"
            ) from None
        return SpawnResult(process, self.backend, harness.name if harness else "")


    def resume_agent(self, worktree: Path, harness_name: str, session_id: str, prompt: str,
                     log_path: Path, output: OutputLog,
                     on_line: LineCallback | None) -> SpawnResult:
        """The agent's conversation resumed with ``prompt`` in its worktree (a follow-up, a
        CI repair), appending to the attempt's log."""
        harness = harness_named(harness_name)
        if self.backend != "claude" or harness is None or harness.resume_argv is None:
            raise DispatchError(f"{harness_name or self.backend} cannot resume a conversation")
        if not usable_session_id(session_id):
            raise DispatchError("the agent reported no session id that can be resumed")
        binary = resolve_bin(harness, self.repo_root, self.environ)
        stdin_path = None
        if len(prompt.encode("utf-8")) <= MAX_PROMPT_ARG_BYTES:
            argv = harness.resume_argv(binary, session_id, prompt)
        elif harness.prompt_on_stdin:
            stdin_path = write_prompt_file(log_path, prompt)
            argv = harness.resume_argv(binary, session_id, None)
        else:
            raise DispatchError(f"the message is over {MAX_PROMPT_ARG_BYTES // 1024} KiB, "
                                f"more than {harness.name} takes as one argument")
        try:
            process = AgentProcess.spawn(argv, worktree, agent_env(self.environ, self.backend),
                                         log_path, output, on_line, harness.fmt, stdin_path)
        except OSError as exc:
            raise DispatchError(f"cannot resume {harness.name} agent "
                                f"({exc.filename or argv[0]}): {exc.strerror or exc}") from None
        return SpawnResult(process, self.backend, harness.name)


def write_prompt_file(log_path: Path, prompt: str) -> Path:
    """The prompt beside the attempt's log, for a harness that reads it on stdin (the agent
    outlives us, so no pipe of ours may feed it)."""
    path = log_path.with_suffix(".prompt")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    try:
        fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(prompt)
    except OSError as exc:
        raise DispatchError(f"cannot write the prompt file {path}: {exc.strerror or exc}") \
            from None
    return path


def spawn_fault_process(
    fault: FaultMode, cwd: Path, log_path: Path, output: OutputLog, on_line: LineCallback | None
) -> AgentProcess:
    """The seed's fault children, as real ``sh`` processes (or an error for spawn_fail)."""
    if fault is FaultMode.SPAWN_FAIL:
        raise DispatchError("[fault-inject] spawn_fail: dispatch returns error immediately")
    where = cwd if cwd.is_dir() else Path.cwd()
    try:
        return AgentProcess.spawn(["sh", "-c", _FAULT_SCRIPTS[fault]], where,
                                  {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, log_path,
                                  output, on_line)
    except OSError as exc:
        raise DispatchError(f"[fault-inject] {fault.value}: spawning sh: {exc}") from None


def _last_line(data: bytes) -> str:
    lines = [ln for ln in data.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""
