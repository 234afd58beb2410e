"""``--self-test``: picker -> dispatcher -> monitor -> reflections with no claude, gh or git.

Runs the real engine in continuous mode over the packaged 4-gap synthetic
backlog with a spawner that writes one dummy file per gap and a PR provider
that reports every branch merged, until the backlog drains.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from chump_tui.agent_process import LineCallback, OutputLog
from chump_tui.backlog import load_backlog
from chump_tui.dispatch_record import Dispatch
from chump_tui.engine import Engine, EngineConfig
from chump_tui.errors import ChumpError
from chump_tui.pr_providers import InstantMergedPrProvider
from chump_tui.reflections import DispatchReflection, MemoryReflectionWriter
from chump_tui.spawners import SpawnResult

SELF_TEST_TIMEOUT_S = 30.0
SYNTH_REPO = Path("/tmp/synth-repo")


def synthetic_backlog_path() -> Path:
    return Path(str(resources.files("chump_tui") / "fixtures" / "synthetic-backlog.yaml"))


class DummyFileSpawner:
    """No worktree, no claim, no process: the 'agent' writes one dummy file per gap."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        return None

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        return None

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        self.scratch.mkdir(parents=True, exist_ok=True)
        (self.scratch / worktree.name.upper()).write_bytes(b"synthetic-shipped\n")
        return SpawnResult(None, "claude")


@dataclass
class SelfTestReport:
    rows: list[Dispatch]
    reflections: list[DispatchReflection]
    dummy_files: list[Path]
    elapsed_s: float
    errors: list[str] = field(default_factory=list)

    def passed(self) -> bool:
        n = len(self.rows)
        return (n > 0 and not self.errors
                and all(r.outcome is not None and r.outcome.kind == "shipped" for r in self.rows)
                and len(self.reflections) == n and len(self.dummy_files) == n
                and all(p.exists() for p in self.dummy_files))

    def verdict_line(self) -> str:
        return (f"self-test {'PASSED' if self.passed() else 'FAILED'}: rows={len(self.rows)} "
                f"reflections={len(self.reflections)} dummy_files={len(self.dummy_files)} "
                f"elapsed={int(self.elapsed_s * 1000)}ms")

    def row_lines(self) -> list[str]:
        return [f"  {r.gap_id:12} {r.branch:30} "
                f"{r.outcome.debug() if r.outcome else r.label()}" for r in self.rows]


def build_self_test_engine(
    scratch: Path, max_parallel: int
) -> tuple[Engine, MemoryReflectionWriter]:
    backlog = load_backlog(synthetic_backlog_path())
    if not backlog.gaps:
        raise ChumpError(f"{backlog.path}: synthetic backlog is empty")
    writer = MemoryReflectionWriter()
    engine = Engine(
        SYNTH_REPO, DummyFileSpawner(scratch), InstantMergedPrProvider(1000), writer,
        EngineConfig(max_parallel=max_parallel, tick_s=0.002, soft_deadline_s=60),
        backlog=backlog.gaps,
    )
    return engine, writer


def collect_report(engine: Engine, writer: MemoryReflectionWriter, scratch: Path,
                   started: float, errors: list[str]) -> SelfTestReport:
    engine.reflections.flush(5.0)
    dummy = sorted(scratch.iterdir()) if scratch.is_dir() else []
    return SelfTestReport(engine.snapshot(), writer.snapshot(), dummy,
                          time.perf_counter() - started, errors)


def scratch_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"chump-orchestrator-self-test-{os.getpid()}"


def run_self_test(max_parallel: int = 2) -> SelfTestReport:
    """Drain the synthetic backlog through the engine; the caller prints the verdict."""
    started = time.perf_counter()
    scratch = scratch_dir()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    engine, writer = build_self_test_engine(scratch, max_parallel)
    errors: list[str] = []
    try:
        engine.start()
        engine.set_continuous(True)
        if not engine.wait_until_idle(SELF_TEST_TIMEOUT_S):
            errors.append(f"backlog did not drain within {SELF_TEST_TIMEOUT_S:.0f}s")
        return collect_report(engine, writer, scratch, started, errors)
    finally:
        engine.close()
