"""Test-only builders for the console: real engines for Pilot flows, frozen ones for snapshots."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from chump_tui.agent_process import AgentProcess, OutputLog
from chump_tui.agent_streams.events import (
    AgentEvent,
    AssistantText,
    MessageUsage,
    SessionStarted,
    ToolCall,
    ToolFinished,
)
from chump_tui.assembly import gap_harnesses, open_session
from chump_tui.backlog import Backlog, load_backlog
from chump_tui.demo import demo_backlog
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine import Engine, EngineConfig
from chump_tui.monitor import DispatchOutcome
from chump_tui.pr_providers import GhPrProvider, PrStatus, ScriptedPrProvider
from chump_tui.reflections import MemoryReflectionWriter, SqliteReflectionWriter
from chump_tui.spawners import RealSpawner
from chump_tui.tui.app import ChumpApp, ConsoleSetup

FROZEN_NOW = 1_790_000_000.0


async def until(pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 20,
                what: str = "") -> None:
    """Pilot's wait_for: poll ``condition`` between app pauses; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def screen_text(app: Any) -> str:
    """What the terminal would show: the text of every composited line of the screen."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip if not seg.control) for strip in strips)


def frozen_backlog() -> Backlog:
    """The demo gaps under a fixed, machine-independent path."""
    return Backlog(path=Path("docs/gaps.yaml"), gaps=demo_backlog().gaps)


Output = list[str | AgentEvent]


def frozen_app(records: list[tuple[Dispatch, Output]] = (),  # type: ignore[assignment]
               dry_run: bool = False, quiet: tuple[Dispatch, Output, float] | None = None,
               ) -> ChumpApp:
    """Deterministic app: frozen clock, engine never started, no blink, no animation.

    ``quiet``: one running agent (a real idle child process) whose last event was that many
    seconds before the frozen now, with a 120 s idle watchdog.
    """
    backlog = frozen_backlog()
    now = [FROZEN_NOW]
    engine = Engine(Path("/repo"), RealSpawner(Path("/repo"), {}), ScriptedPrProvider({}),
                    MemoryReflectionWriter(),
                    EngineConfig(tick_s=30, kill_grace_s=30, idle_timeout_s=120),
                    backlog=backlog.gaps, clock=lambda: now[0])
    for record, output in records:
        engine.restore(record, output)
    if quiet is not None:
        record, output, seconds = quiet
        now[0] = FROZEN_NOW - seconds
        engine.restore(record, output, process=idle_child())
        now[0] = FROZEN_NOW
    setup = ConsoleSetup(lambda: engine, backlog, Path("/repo"), dry_run=dry_run,
                         mode_label="DRY-RUN" if dry_run else "EXECUTE", max_parallel=2,
                         reflections_target="/repo/sessions/chump_memory.db",
                         export_dir=Path("/repo/sessions"), clock=lambda: FROZEN_NOW,
                         start_engine=False)
    app = ChumpApp(setup)
    app.animation_level = "none"
    return app


def record(gap_id: str, phase: str, *, attempt: int = 1, elapsed: float = 300,
           soft: float = 1200, pr: PrStatus | None = None,
           outcome: DispatchOutcome | None = None, **extra: object) -> Dispatch:
    slug = gap_id.lower()
    d = Dispatch(key=f"{gap_id}#{attempt}", gap_id=gap_id, title=f"title of {gap_id}",
                 priority="P1", effort="s", branch=f"claude/{slug}",
                 worktree=f"/repo/.claude/worktrees/{slug}", attempt=attempt,
                 started_at=FROZEN_NOW - elapsed, soft_deadline_s=soft,
                 phase=phase, backend="claude", pid=40000 + attempt, pr=pr,  # type: ignore[arg-type]
                 outcome=outcome)
    if phase in ("ended", "spawn_failed"):
        d.ended_at = FROZEN_NOW
        d.reflection_written = phase == "ended"
    for key, value in extra.items():
        setattr(d, key, value)
    return d


def every_state() -> list[tuple[Dispatch, list[str]]]:
    lines = ["reading CLAUDE.md", "WARN: flaky test retried", "running cargo test"]
    return [
        (record("DEMO-001", "running", elapsed=125), lines),
        (record("DEMO-002", "running", elapsed=900, pr=PrStatus(2001, "OPEN", "DIRTY")), lines),
        (record("DEMO-003", "ended", elapsed=600, pr=PrStatus(2002, "MERGED"),
                outcome=DispatchOutcome.shipped(2002)), lines),
        (record("DEMO-004", "ended", pr=PrStatus(2003, "CLOSED"),
                outcome=DispatchOutcome.ci_failed(2003)), ["FAIL: CI red"]),
        (record("DEMO-005", "stalled", elapsed=1500), ["waiting for a permission prompt"]),
        (record("DEMO-006", "ended", elapsed=2500,
                outcome=DispatchOutcome.killed("soft-deadline exceeded (1200s × 2)")),
         ["PANIC: stuck"]),
        (record("DEMO-007", "spawn_failed", elapsed=0, pid=None,
                error="creating worktree: git worktree add failed (exit 128): "
                      "fatal: invalid reference: origin/main"), []),
        (record("DEMO-008", "killing", elapsed=400, kill_reason="killed by operator",
                kill_deadline=FROZEN_NOW + 27), ["got SIGTERM; finishing"]),
        (record("DEMO-012", "running", elapsed=60, exit_code=0), ["exited without a PR"]),
    ]


_CHILDREN: list[AgentProcess] = []


def idle_child() -> AgentProcess:
    """A real process that only sleeps (killed by ``stop_idle_children``)."""
    log = Path(tempfile.mkdtemp(prefix="chump-test-")) / "idle.log"
    child = AgentProcess.spawn(["sleep", "600"], Path("/"), {"PATH": os.environ["PATH"]}, log,
                               OutputLog())
    _CHILDREN.append(child)
    return child


def stop_idle_children() -> None:
    while _CHILDREN:
        _CHILDREN.pop().signal_group(signal.SIGKILL)


def claude_events(turns: int = 2) -> list[str | AgentEvent]:
    """What a claude agent running ``cargo test -p core`` has said so far."""
    events: list[str | AgentEvent] = [SessionStarted("8378261a-6798", "claude-sonnet-4")]
    for turn in range(1, turns):
        events += [ToolCall(f"t{turn}", "Read", "src/lib.rs"),
                   ToolFinished(f"t{turn}", True, 4200, "pub mod dispatch;"),
                   MessageUsage(f"m{turn}", 1600 * turn, 70)]
    events += [AssistantText("The tests should pass now; running them."),
               ToolCall("tz", "Bash", "cargo test -p core"), MessageUsage("mz", 3200, 140)]
    return events


def live_app(repo: Path, backlog_path: Path, *, kill_grace_s: float = 0.5,
             tick_s: float = 0.2, max_parallel: int = 2) -> ChumpApp:
    """A console over a real git repo with RealSpawner, the stub gh, a real SQLite file and
    the repo's session (locked and resumed as the real launcher does)."""
    backlog = load_backlog(backlog_path)
    environ = dict(os.environ)
    writer = SqliteReflectionWriter.for_repo(repo)
    store, records, _notes = open_session(repo)
    engine = Engine(repo, RealSpawner(repo, environ, gap_harness=gap_harnesses(backlog)), GhPrProvider(repo, environ=environ), writer,
                    EngineConfig(tick_s=tick_s, kill_grace_s=kill_grace_s,
                                 max_parallel=max_parallel, environ=environ,
                                 log_dir=repo / "sessions" / "chump-tui" / "logs"),
                    backlog=backlog.gaps,
                    store=store)
    notes = engine.resume(records)
    setup = ConsoleSetup(lambda: engine, backlog, repo, dry_run=False, mode_label="EXECUTE",
                         max_parallel=max_parallel, reflections_target=writer.describe(),
                         export_dir=repo / "sessions", store=store, extra_notes=notes)
    return ChumpApp(setup)


def close_app(app: ChumpApp) -> None:
    app.engine.close()
    if app.setup.store is not None:
        app.setup.store.release()
