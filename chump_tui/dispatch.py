"""Dispatching one gap: depth rule, id check, prompt, worktree, claim, spawn, in that order.

A failing step raises DispatchError naming the step and the later steps are
not run; the caller records it as a spawn failure for that gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog
from chump_tui.backlog import Gap
from chump_tui.errors import DispatchError, TakenElsewhere
from chump_tui.paths import dispatch_paths, unsafe_id_reason
from chump_tui.prompt import build_prompt
from chump_tui.spawners import Spawner


@dataclass
class DispatchHandle:
    """What a successful dispatch hands to the monitor."""

    gap_id: str
    worktree: Path
    branch: str
    backend: str
    harness: str
    process: AgentProcess | None
    started_at: float
    claim_note: str | None = None
    host: str = ""
    remote: str = ""


def depth_refusal(environ: Mapping[str, str]) -> str | None:
    """Why we may not dispatch from this environment (a dispatched agent), else None."""
    raw = environ.get("CHUMP_DISPATCH_DEPTH", "").strip()
    try:
        depth = int(raw) if raw else 0
    except ValueError:
        depth = 1  # set to something odd: assume we are inside a dispatch
    if depth >= 1:
        return (f"refusing to dispatch: CHUMP_DISPATCH_DEPTH={raw} "
                "(dispatched agents may not dispatch)")
    return None


def dispatch_gap_with(
    spawner: Spawner,
    gap: Gap,
    repo_root: Path,
    base_ref: str,
    log_path: Path,
    output: OutputLog,
    on_line: LineCallback | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    stopping: Callable[[], bool] = lambda: False,
) -> DispatchHandle:
    """Run the steps; ``stopping()`` true between two steps ends it (the console quits)."""

    def check_stopping(before: str) -> None:
        if stopping():
            raise DispatchError(f"stopped before {before} (chump-tui is quitting)")

    if environ is not None:
        refusal = depth_refusal(environ)
        if refusal:
            raise DispatchError(refusal)
    unsafe = unsafe_id_reason(gap.id)
    if unsafe:
        raise DispatchError(f"gap {gap.id!r}: {unsafe}")
    worktree, branch = dispatch_paths(repo_root, gap.id)
    # Everything that can be checked is checked before anything is created.
    prompt = build_prompt(gap.id, repo_root)
    preflight = getattr(spawner, "preflight", None)  # optional: test spawners have none
    if preflight is not None:
        preflight(gap.id, prompt)
    check_stopping("the worktree was made")
    try:
        spawner.create_worktree(worktree, branch, base_ref)
    except DispatchError as exc:
        raise DispatchError(f"creating worktree {worktree} for {gap.id}: {exc}") from None
    check_stopping("the claim")
    try:
        note = spawner.claim_gap(worktree, gap.id)
    except DispatchError as exc:
        raise DispatchError(f"claiming {gap.id} in {worktree}: {exc}") from None
    check_stopping("the agent started")
    try:
        result = spawner.spawn_agent(worktree, gap.id, prompt, log_path, output, on_line)
    except TakenElsewhere:
        raise  # said as it is: another session's gap, not this dispatch's failure
    except DispatchError as exc:
        raise DispatchError(f"spawning agent for {gap.id}: {exc}") from None
    return DispatchHandle(
        gap_id=gap.id,
        worktree=worktree,
        branch=branch,
        backend=result.backend,
        harness=result.harness,
        process=result.process,
        started_at=clock(),
        claim_note=note,
        host=result.host,
        remote=result.remote,
    )
