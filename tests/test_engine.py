"""The engine: the seed's monitor-loop tests plus kills, retries and continuous mode."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog
from chump_tui.backlog import Gap
from chump_tui.engine import Engine, EngineConfig
from chump_tui.events import DispatchChanged, EngineEvent, OutputLine
from chump_tui.pr_providers import PrStatus, ScriptedPrProvider
from chump_tui.reflections import MemoryReflectionWriter
from chump_tui.spawners import SpawnResult
from tests.conftest import wait_for


def gap(id: str, effort: str = "m", deps: tuple[str, ...] = (), priority: str = "P1") -> Gap:
    return Gap(id=id, title=f"title {id}", priority=priority, effort=effort, status="open",
               depends_on=deps)


class ScriptSpawner:
    """No worktree; the agent is a real `sh -c <script>` child (or none when script is None)."""

    def __init__(self, scripts: dict[str, str | None] | None = None,
                 default: str | None = None) -> None:
        self.scripts = scripts or {}
        self.default = default
        self.spawned: list[str] = []

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        return None

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        return None

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        self.spawned.append(gap_id)
        script = self.scripts.get(gap_id, self.default)
        if script is None:
            return SpawnResult(None, "claude")
        proc = AgentProcess.spawn(["sh", "-c", script], Path("/tmp"), dict(os.environ),
                                  log_path, output, on_line)
        return SpawnResult(proc, "claude")


def make_engine(provider: ScriptedPrProvider, spawner: ScriptSpawner | None = None,
                backlog: list[Gap] | None = None, clock=time.time,  # type: ignore[no-untyped-def]
                **config: object) -> tuple[Engine, MemoryReflectionWriter, list[EngineEvent]]:
    writer = MemoryReflectionWriter()
    # Watchdogs off unless a test turns them on: these tests jump a fake clock past
    # deadlines with agents that print nothing.
    cfg = EngineConfig(tick_s=0.005, kill_grace_s=0.2, first_output_timeout_s=0,
                       idle_timeout_s=0)
    for k, v in config.items():
        setattr(cfg, k, v)
    engine = Engine(Path("/tmp/repo"), spawner or ScriptSpawner(), provider, writer, cfg,
                    backlog=backlog or [], clock=clock)
    events: list[EngineEvent] = []
    engine.subscribe(events.append)
    return engine, writer, events


def run_until_idle(engine: Engine, gaps: list[Gap], timeout: float = 10) -> None:
    engine.dispatch(gaps)
    engine.start()
    try:
        assert engine.wait_until_idle(timeout), "engine did not go idle"
        assert engine.reflections.flush(5)
    finally:
        engine.close()


def outcomes(engine: Engine) -> list[tuple[str, str]]:
    return [(r.branch, r.outcome.debug() if r.outcome else r.label()) for r in engine.snapshot()]


def test_returns_immediately_on_empty_input() -> None:
    engine, writer, _ = make_engine(ScriptedPrProvider({}))
    run_until_idle(engine, [])
    assert engine.snapshot() == [] and writer.snapshot() == []


def test_merged_pr_on_first_tick() -> None:
    engine, _, _ = make_engine(ScriptedPrProvider({"claude/x-1": [PrStatus(101, "MERGED")]}))
    run_until_idle(engine, [gap("X-1")])
    assert outcomes(engine) == [("claude/x-1", "Shipped(101)")]


def test_no_pr_far_past_deadline_without_process_is_killed() -> None:
    # Ported: elapsed is huge against a 1 s soft deadline -> the 2x rung -> Killed.
    engine, _, _ = make_engine(ScriptedPrProvider({}), clock=lambda: 10_000.0,
                               soft_deadline_s=1)
    engine.dispatch([gap("Y-1")])
    engine.clock = lambda: 20_000.0
    engine.start()
    assert engine.wait_until_idle(10)
    engine.close()
    assert outcomes(engine) == [("claude/y-1", 'Killed("soft-deadline exceeded (1s × 2)")')]


def test_multiple_branches_keep_input_order() -> None:
    provider = ScriptedPrProvider({"claude/b": [None, None, PrStatus(2, "MERGED")],
                                   "claude/a": [None, None, None, None, PrStatus(1, "MERGED")]})
    engine, _, _ = make_engine(provider)
    run_until_idle(engine, [gap("A"), gap("B")])
    assert outcomes(engine) == [("claude/a", "Shipped(1)"), ("claude/b", "Shipped(2)")]


def test_one_reflection_per_outcome_with_seed_fields() -> None:
    provider = ScriptedPrProvider({"claude/auto-1": [PrStatus(1, "MERGED")],
                                   "claude/eval-9": [PrStatus(2, "CLOSED")]})
    engine, writer, _ = make_engine(provider, ScriptSpawner({"PRODUCT-3": "exit 1"}))
    run_until_idle(engine, [gap("AUTO-1"), gap("EVAL-9"), gap("PRODUCT-3")])
    by_gap = {r.gap_id: r for r in writer.snapshot()}
    assert len(writer.snapshot()) == 3
    assert (by_gap["AUTO-1"].outcome, by_gap["AUTO-1"].pr_number) == ("shipped", 1)
    assert by_gap["AUTO-1"].gap_domain == "auto"
    assert (by_gap["EVAL-9"].outcome, by_gap["EVAL-9"].pr_number) == ("ci_failed", 2)
    assert (by_gap["PRODUCT-3"].outcome, by_gap["PRODUCT-3"].pr_number) == ("killed", None)
    d = by_gap["AUTO-1"].directive()
    for needle in ("gap=AUTO-1", "effort=m", "outcome=shipped", "pr_number=Some(1)",
                   "parallel_siblings=", "domain=auto"):
        assert needle in d
    assert all(r.notes.startswith("backend=claude") for r in writer.snapshot())
    assert all(r.reflection_written for r in engine.snapshot())


def test_signal_lines_reach_reflection_notes() -> None:
    script = "echo 'info' >&2; echo 'WARN: low disk' >&2; echo 'panic: boom' >&2; exit 2"
    engine, writer, _ = make_engine(ScriptedPrProvider({}), ScriptSpawner(default=script))
    run_until_idle(engine, [gap("N-1")])
    (refl,) = writer.snapshot()
    assert refl.notes == "backend=claude WARN: low disk\npanic: boom"
    assert refl.directive().endswith("notes=backend=claude WARN: low disk")
    assert outcomes(engine) == [("claude/n-1", 'Killed("exit code 2")')]


def test_running_agent_past_soft_deadline_is_stalled_then_killed_at_2x() -> None:
    now = [1000.0]
    engine, _, events = make_engine(ScriptedPrProvider({}), ScriptSpawner(default="sleep 60"),
                                         clock=lambda: now[0], soft_deadline_s=100)
    engine.dispatch([gap("S-1")])
    engine.start()
    try:
        now[0] += 150
        engine.poll_now()
        wait_for(lambda: engine.snapshot()[0].phase == "stalled", 5, "stalled warning")
        assert engine.snapshot()[0].outcome is None  # still watched, not terminal
        now[0] += 100
        engine.poll_now()
        assert engine.wait_until_idle(10)
    finally:
        engine.close()
    assert outcomes(engine) == [("claude/s-1", 'Killed("soft-deadline exceeded (100s × 2)")')]
    assert [e.why for e in events if isinstance(e, DispatchChanged)].count("stalled") == 1


def test_kill_grace_does_not_hold_up_other_agents() -> None:
    """SIGTERM-ignoring agent with a 3 s grace; another agent's lines and outcome still flow."""
    ignore_term = "trap '' TERM; echo ready >&2; while true; do sleep 0.05; done"
    chatty = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i >&2; sleep 0.1; done; exit 3"
    engine, _, events = make_engine(
        ScriptedPrProvider({}), ScriptSpawner({"K-1": ignore_term, "C-1": chatty}),
        kill_grace_s=3.0)
    engine.dispatch([gap("K-1")])
    engine.start()
    try:
        wait_for(lambda: any(isinstance(e, OutputLine) and "ready" in e.lines for e in events), 5)
        kill_started = time.monotonic()
        assert engine.kill("K-1#1")
        engine.dispatch([gap("C-1")])
        wait_for(lambda: engine.get("C-1#1").outcome is not None, 5, "chatty agent outcome")  # type: ignore[union-attr]
        chatty_done = time.monotonic()
        assert engine.get("K-1#1").phase == "killing"  # type: ignore[union-attr]
        assert chatty_done - kill_started < 3.0
        lines = [ln for e in events if isinstance(e, OutputLine) and e.key == "C-1#1"
                 for ln in e.lines]
        assert lines == [f"line{i}" for i in range(1, 11)]
        assert engine.wait_until_idle(10)
        assert time.monotonic() - kill_started >= 2.9
    finally:
        engine.close()
    k = engine.get("K-1#1")
    assert k is not None and k.outcome is not None and k.outcome.reason == "killed by operator"


def test_kill_signals_the_whole_group() -> None:
    script = "sleep 300 & echo child $! >&2; trap '' TERM; wait"
    engine, _, events = make_engine(ScriptedPrProvider({}), ScriptSpawner(default=script),
                                    kill_grace_s=0.3)
    engine.dispatch([gap("G-1")])
    engine.start()
    try:
        def child_lines() -> list[str]:
            return [ln for e in events if isinstance(e, OutputLine) for ln in e.lines
                    if ln.startswith("child")]

        wait_for(child_lines, 5)
        child_pid = int(child_lines()[0].split()[1])
        engine.kill("G-1#1")
        assert engine.wait_until_idle(10)
    finally:
        engine.close()
    wait_for(lambda: not _alive(child_pid), 5, "grandchild gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_one_provider_call_per_poll_for_all_branches() -> None:
    provider = ScriptedPrProvider({f"claude/p-{i}": [None] * 5 + [PrStatus(i, "MERGED")]
                                   for i in range(10)})
    engine, _, _ = make_engine(provider)
    run_until_idle(engine, [gap(f"P-{i}") for i in range(10)])
    assert engine.gh_polls == provider.calls
    assert provider.calls <= 8  # 6 answers per branch, all branches in one call


def test_github_error_is_reported_and_retried() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def poll(self, branches):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError("HTTP 502")
            return {b: PrStatus(5, "MERGED") for b in branches}

    writer = MemoryReflectionWriter()
    engine = Engine(Path("/tmp/r"), ScriptSpawner(), Flaky(), writer, EngineConfig(tick_s=0.005))
    errors: list[str] = []
    engine.subscribe(lambda e: errors.append(e.error) if getattr(e, "error", None) else None)
    run_until_idle(engine, [gap("F-1")])
    assert errors[:2] == ["HTTP 502", "HTTP 502"]
    assert outcomes(engine) == [("claude/f-1", "Shipped(5)")]


def test_retry_makes_attempt_two_and_ignores_the_old_closed_pr() -> None:
    provider = ScriptedPrProvider({"claude/r-1": [PrStatus(7, "CLOSED")]})
    engine, writer, _ = make_engine(provider, ScriptSpawner(default="sleep 0.2; exit 0"),
                                    soft_deadline_s=0.5)
    engine.dispatch([gap("R-1")])
    engine.start()
    try:
        assert engine.wait_until_idle(10)
        assert engine.retry("R-1#2") is None  # no such attempt
        retried = engine.retry("R-1#1")
        assert retried is not None and retried.attempt == 2 and retried.key == "R-1#2"
        assert engine.wait_until_idle(10)
        assert engine.reflections.flush(5)
    finally:
        engine.close()
    rows = engine.snapshot()
    # The old attempt's CLOSED PR #7 is not attributed to attempt 2: it stalls instead.
    assert [r.outcome.debug() for r in rows if r.outcome] == ["CiFailed(7)", "Stalled"]
    assert len(writer.snapshot()) == 2


def test_continuous_mode_drains_a_dependency_chain_in_order() -> None:
    backlog = [gap("C", deps=("B",)), gap("B", deps=("A",)), gap("A"), gap("Z", priority="P2")]
    provider = ScriptedPrProvider({f"claude/{g.id.lower()}": [None, PrStatus(i, "MERGED")]
                                   for i, g in enumerate(backlog)})
    engine, _, _ = make_engine(provider, backlog=backlog, max_parallel=2)
    engine.start()
    engine.set_continuous(True)
    try:
        assert engine.wait_until_idle(10)
    finally:
        engine.close()
    order = [r.gap_id for r in engine.snapshot()]
    assert order.index("A") < order.index("B") < order.index("C")
    assert sorted(order) == ["A", "B", "C", "Z"]
    assert all(r.outcome and r.outcome.kind == "shipped" for r in engine.snapshot())


def test_listener_errors_do_not_stop_the_engine() -> None:
    engine, _, _ = make_engine(ScriptedPrProvider({"claude/l-1": [PrStatus(1, "MERGED")]}))

    def broken(event: EngineEvent) -> None:
        raise ValueError("boom")

    engine.subscribe(broken)
    run_until_idle(engine, [gap("L-1")])
    assert outcomes(engine) == [("claude/l-1", "Shipped(1)")]


def test_outcome_recorded_once_even_when_kill_races_exit() -> None:
    engine, writer, _ = make_engine(ScriptedPrProvider({}), ScriptSpawner(default="sleep 0.05; exit 1"))
    engine.dispatch([gap("RACE-1")])
    engine.start()
    threading.Thread(target=lambda: engine.kill("RACE-1#1")).start()
    assert engine.wait_until_idle(10)
    engine.close()
    assert len(writer.snapshot()) == 1


def test_dispatch_and_continuous_refill_never_dispatch_a_gap_twice() -> None:
    """A refill that runs just as the operator's dispatch reaches gap B must not take B too."""
    backlog = [gap("D-A"), gap("D-B")]
    engine, _, _ = make_engine(ScriptedPrProvider({}), ScriptSpawner(default="sleep 5"),
                               backlog=backlog, max_parallel=2, continuous=True)
    real_reserve = engine.launcher.reserve
    raced = threading.Event()

    def reserve_with_a_refill_racing(g: Gap, attempt: int, stale=(), save=True):  # type: ignore[no-untyped-def]
        if g.id == "D-B" and not raced.is_set():
            raced.set()
            rival = threading.Thread(target=engine.refill.refill_soon)
            rival.start()
            rival.join(0.5)  # with the fix it waits for our lock; without it, it takes D-B
        return real_reserve(g, attempt, stale, save)

    engine.launcher.reserve = reserve_with_a_refill_racing  # type: ignore[method-assign]
    engine.dispatch(backlog)
    wait_for(lambda: not any(t.is_alive() for t in engine.refill.launchers), 5, "refill done")
    keys = sorted(r.key for r in engine.snapshot())
    engine.stop_all("test", grace_s=0.1)
    engine.close()
    assert raced.is_set()
    assert keys == ["D-A#1", "D-B#1"], keys


def test_a_pr_opened_before_the_attempt_started_is_not_its_outcome() -> None:
    """A merged PR left by an earlier run on the same branch is not this attempt's: it ships
    with the PR it opened itself."""
    started = time.time()
    old = PrStatus(100, "MERGED", created_at=started - 3600)
    new = PrStatus(105, "MERGED", created_at=started + 1)
    engine, _, _ = make_engine(ScriptedPrProvider({"claude/z-1": [old, old, old, new]}))
    run_until_idle(engine, [gap("Z-1")])
    assert outcomes(engine) == [("claude/z-1", "Shipped(105)")]


def test_attempts_go_on_counting_from_earlier_sessions_logs(tmp_path: Path) -> None:
    """A new session never writes into an earlier session's log file (nor shows its output
    as its own): its first attempt of a gap is numbered after the logs already there."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "n-1-attempt1.log").write_text("an earlier session's agent\n")
    (logs / "n-1-attempt2.log").write_text("and its retry\n")
    engine, _, _ = make_engine(ScriptedPrProvider({}), log_dir=logs)
    engine.dispatch([gap("N-1")])
    (row,) = engine.snapshot()
    engine.stop_all("test", grace_s=0.1)
    engine.close()
    assert row.key == "N-1#3" and row.log_path.endswith("n-1-attempt3.log")
