"""Child process for the console figures of bench/run.py; prints one JSON line.

  filter N              10,000-gap backlog: keystroke (search, filter) to redraw
  flood N RATE SECONDS  N real agents writing RATE lines/s each, console headless
  gh COUNTS             gh invocations per poll for 1, 10, 100 branches (stub gh)
  kill OTHERS SECONDS   kill one agent with a SECONDS grace while OTHERS keep writing
  stream N RATE SECONDS N agents writing claude stream-json, RATE events/s each (4 KB tool
                        results, a 1 MB line now and then)
  mixed N RATE SECONDS  as stream, the agents split over claude, codex, opencode, gemini
  soak GAPS PAR SECONDS continuous mode over GAPS short-lived stream-json agents, PAR at
                        once, for SECONDS: the RSS curve and key latency over time

The console is the real ChumpApp run headless by Textual's Pilot; agents are real
processes; GitHub is a stub `gh` or the demo's simulated GitHub.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from textual import events

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chump_tui.agent_process import AgentProcess, LineCallback, OutputLog  # noqa: E402
from chump_tui.backlog import Backlog, Gap  # noqa: E402
from chump_tui.demo import SimulatedGitHub  # noqa: E402
from chump_tui.engine import Engine, EngineConfig  # noqa: E402
from chump_tui.events import EngineEvent, OutputLine  # noqa: E402
from chump_tui.harness import HARNESSES  # noqa: E402
from chump_tui.pr_providers import GhPrProvider, ScriptedPrProvider  # noqa: E402
from chump_tui.reflections import MemoryReflectionWriter, SqliteReflectionWriter  # noqa: E402
from chump_tui.spawners import SpawnResult  # noqa: E402
from chump_tui.tui.app import ChumpApp, ConsoleSetup  # noqa: E402

PY = sys.executable

# A simulated agent: RATE lines/s in bursts every 100 ms for SECONDS, then "merges".
FLOOD_AGENT = r"""
import sys, time
branch, rate, seconds, state = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
per_burst = max(1, rate // 10)
end = time.time() + seconds
i = 0
while time.time() < end:
    burst = "".join(f"[{branch}] line {i + j} WARN-free build output t={time.time():.3f}\n"
                    for j in range(per_burst))
    sys.stderr.write(burst)
    sys.stderr.flush()
    i += per_burst
    time.sleep(0.1)
with open(state, "a") as fh:
    fh.write(f"{branch} MERGED\n")
"""

# Ignores SIGTERM until SIGKILL.
STUBBORN_AGENT = r"""
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.stderr.write("ignoring SIGTERM\n"))
sys.stderr.write("stubborn agent up\n"); sys.stderr.flush()
while True:
    time.sleep(0.5)
"""

# An agent's JSON event stream: RATE events/s in bursts every 100 ms (a tool call, then its
# 4 KB result), a 1 MB tool result every BIG seconds, a final report, then "merges". FORMAT
# is the harness whose events it writes: claude, codex, opencode or gemini.
STREAM_AGENT = r"""
import json, sys, time
branch, rate, seconds, state, big = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                     sys.argv[4], float(sys.argv[5]))
fmt = sys.argv[6] if len(sys.argv) > 6 else "claude"
out = sys.stdout
def emit(obj): out.write(json.dumps(obj) + "\n")
def call(i, content):
    cmd = f"cargo test -p crate-{i % 40}"
    if fmt == "codex":
        emit({"type": "item.started", "item": {"id": f"i{i}", "type": "command_execution",
                                               "command": cmd, "status": "in_progress"}})
        emit({"type": "item.completed", "item": {"id": f"i{i}", "type": "command_execution",
              "command": cmd, "aggregated_output": content, "exit_code": 0,
              "status": "completed"}})
        emit({"type": "turn.completed", "usage": {"input_tokens": 1000, "output_tokens": 50}})
    elif fmt == "opencode":
        emit({"type": "step_start", "part": {"type": "step-start"}})
        emit({"type": "tool_use", "part": {"tool": "bash", "callID": f"c{i}", "state": {
              "status": "completed", "input": {"command": cmd}, "output": content,
              "metadata": {"exit": 0}}}})
        emit({"type": "step_finish", "part": {"tokens": {"input": 1000, "output": 50},
                                              "cost": 0.001}})
    elif fmt == "gemini":
        emit({"type": "tool_use", "tool_name": "run_shell_command", "tool_id": f"t{i}",
              "parameters": {"command": cmd}})
        emit({"type": "tool_result", "tool_id": f"t{i}", "status": "success",
              "output": content})
    else:
        emit({"type": "assistant", "message": {"id": f"m{i}", "content": [
            {"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {"command": cmd}}],
            "usage": {"input_tokens": 1000 + i, "output_tokens": 50}}})
        emit({"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": f"t{i}", "content": content,
             "is_error": False}]}})
def finish(i):
    if fmt == "codex":
        return
    if fmt == "gemini":
        emit({"type": "result", "status": "success", "stats": {"input_tokens": 1000 * i,
              "output_tokens": 50 * i, "tool_calls": i}})
    elif fmt == "claude":
        emit({"type": "result", "subtype": "success", "is_error": False, "num_turns": i,
              "total_cost_usd": 0.01 * i / 100, "result": "done", "duration_ms": 1000,
              "usage": {"input_tokens": 1000 * i, "output_tokens": 50 * i}})
init = {"claude": {"type": "system", "subtype": "init", "session_id": branch, "model": "b"},
        "codex": {"type": "thread.started", "thread_id": branch},
        "gemini": {"type": "init", "session_id": branch, "model": "b"}}.get(fmt)
if init:
    emit(init)
per_burst = max(1, rate // 10)
result = "x" * 4000
end = time.time() + seconds
next_big = time.time() + big
i = 0
while time.time() < end:
    for _ in range(per_burst // 2 or 1):
        i += 1
        content = result
        if time.time() >= next_big:
            content, next_big = "y" * (1024 * 1024), next_big + big
        call(i, content)
    out.flush()
    time.sleep(0.1)
finish(i)
out.flush()
with open(state, "a") as fh:
    fh.write(f"{branch} MERGED\n")
"""

TICKER_AGENT = r"""
import sys, time
while True:
    sys.stderr.write(f"t={time.time():.4f}\n"); sys.stderr.flush()
    time.sleep(0.1)
"""


def gaps(n: int, prefix: str) -> list[Gap]:
    return [Gap(id=f"{prefix}-{i:05d}", title=f"synthetic gap {i} about area {i % 37}",
                priority=("P0", "P1", "P2", "P3")[i % 4], effort=("s", "m", "l", "xl")[i % 4],
                status="open" if i % 3 else "done",
                depends_on=(f"{prefix}-{i - 1:05d}",) if i % 5 == 0 and i else ())
            for i in range(n)]


class ScriptSpawner:
    """No worktree or claim; the agent is ``python -c <script> <args>`` per gap."""

    def __init__(self, scripts: dict[str, tuple[str, list[str]]]) -> None:
        self.scripts = scripts

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        worktree.mkdir(parents=True, exist_ok=True)

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        return None

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        script, args = self.scripts[gap_id]
        proc = AgentProcess.spawn([PY, "-c", script, *args], worktree, dict(os.environ),
                                  log_path, output, on_line)
        return SpawnResult(proc, "bench")


class StreamSpawner(ScriptSpawner):
    """Like ScriptSpawner, but the agent's output is read as its harness's event stream
    (the script's last argument names the harness; claude when absent)."""

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        script, args = self.scripts[gap_id]
        harness = HARNESSES[args[5] if len(args) > 5 else "claude"]
        proc = AgentProcess.spawn([PY, "-c", script, *args], worktree, dict(os.environ),
                                  log_path, output, on_line, harness.fmt)
        return SpawnResult(proc, "bench", harness.name)


class NoProcessSpawner(ScriptSpawner):
    def __init__(self) -> None:
        super().__init__({})

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: LineCallback | None) -> SpawnResult:
        return SpawnResult(None, "bench")


def setup_for(engine: Engine, backlog: list[Gap], root: Path) -> ConsoleSetup:
    return ConsoleSetup(lambda: engine, Backlog(root / "gaps.yaml", backlog), root, dry_run=False,
                        mode_label="BENCH", max_parallel=engine.config.max_parallel,
                        reflections_target=engine.writer.describe(), export_dir=root)


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class FrameClock:
    """Timestamps every frame the app composes (App._display gets each one; headless,
    it is rendered but not written to a terminal)."""

    def __init__(self, app: Any) -> None:
        self.frames: list[float] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            if renderable is not None:
                self.frames.append(time.perf_counter())
            original(screen, renderable)

        app._display = display


def turn_at_edges(monitor: Any, key: str) -> str:
    """At either end of the grid (ended cards are recycled, so it shrinks and moves) a
    move that way would change nothing: turn round."""
    cards = list(monitor._cards)
    if monitor.selected == cards[-1]:
        return "left"
    if monitor.selected == cards[0]:
        return "right"
    return key


async def key_to_frame(app: Any, clock: FrameClock, key: str, character: str | None,
                       changed: Any, timeout: float = 30) -> float:
    """ms from posting a key event to the first frame written after its effect shows.

    (Pilot.press/pause wait until the whole process is CPU-idle, which a console
    tailing a hundred busy agents never is, so they cannot time this.)
    """
    started = time.perf_counter()
    app.post_message(events.Key(key, character))
    while not changed():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"key {key!r} had no effect within {timeout}s")
        await asyncio.sleep(0.001)
    effect = time.perf_counter()
    while not clock.frames or clock.frames[-1] < effect:
        if time.perf_counter() - started > timeout:
            screen = app.screen
            raise RuntimeError(f"no frame after key {key!r} within {timeout}s "
                               f"(screen {screen}, frames {len(clock.frames)}, "
                               f"selected {getattr(screen, 'selected', None)})")
        await asyncio.sleep(0.001)
    return (clock.frames[-1] - started) * 1000


# ------------------------------------------------------------------ filter
async def figure_filter(n: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bench-filter-"))
    backlog = gaps(n, "GAP")
    engine = Engine(root, NoProcessSpawner(), ScriptedPrProvider({}), MemoryReflectionWriter(),
                    EngineConfig(log_dir=root / "logs"), backlog=backlog)
    setup = setup_for(engine, backlog, root)
    setup.start_engine = False
    app = ChumpApp(setup)
    samples: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause(0.5)
        clock = FrameClock(app)
        screen = app.screen

        table = screen.query_one("GapTable")

        def rebuilt(before: int) -> Any:
            return lambda: table.generation != before

        # Every key here changes the rows shown, so each one must end in a new frame.
        for _ in range(24):
            samples.append(await key_to_frame(app, clock, "f", "f", rebuilt(table.generation)))
        await pilot.press("slash")
        await pilot.pause()
        keys = [*"99", "7", "backspace", "backspace", "5", "backspace", "backspace",
                *"12", "3", "backspace", "backspace", "backspace"]
        for key in [*keys, *keys, *"area 3", "1"]:
            char = key if len(key) == 1 else None
            name = "space" if key == " " else key
            if key in (" ", "a", "r", "e"):  # these do not change the rows ("area" is in all)
                await pilot.press(name)
                await pilot.pause()
                continue
            samples.append(await key_to_frame(app, clock, name, char,
                                              rebuilt(table.generation)))
        await pilot.press("escape")
    engine.close()
    return {"n": len(samples), "p95_ms": pct(samples, 0.95),
            "median_ms": statistics.median(samples), "max_ms": max(samples), "gaps": n}


# ------------------------------------------------------------------- flood
async def figure_flood(n: int, rate: int, seconds: float, stream: bool = False,
                       mixed: bool = False) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    state = root / "github-state.txt"
    backlog = gaps(n, "FLOOD")
    backlog = [Gap(id=g.id, title=g.title, priority="P1", effort="s", status="open")
               for g in backlog]
    if stream:
        kinds = list(HARNESSES) if mixed else ["claude"]
        spawner: ScriptSpawner = StreamSpawner({g.id: (STREAM_AGENT, [
            f"claude/{g.id.lower()}", str(rate), str(seconds), str(state), "10",
            kinds[i % len(kinds)]]) for i, g in enumerate(backlog)})
    else:
        spawner = ScriptSpawner({g.id: (FLOOD_AGENT, [
            f"claude/{g.id.lower()}", str(rate), str(seconds), str(state)]) for g in backlog})
    writer = SqliteReflectionWriter(root / "sessions" / "chump_memory.db")
    engine = Engine(root, spawner, SimulatedGitHub(state), writer,
                    EngineConfig(max_parallel=n, tick_s=2.0, soft_deadline_s=3600,
                                 log_dir=root / "logs"), backlog=backlog)
    app = ChumpApp(setup_for(engine, backlog, root))
    me = psutil.Process()
    latencies: list[float] = []
    rss_max = 0
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("m")
        cpu0 = _cpu()
        t0 = time.perf_counter()
        app.dispatch_gaps(backlog)
        # Key latency is measured while all agents write (not while 100 interpreters
        # start on two cores); CPU, RSS and outcomes cover the whole run.
        while sum(1 for d in app.dispatches.values() if d.phase == "running") < n:
            await asyncio.sleep(0.1)
        steady_from = time.perf_counter() - t0
        clock = FrameClock(app)
        monitor = app.screen
        deadline = t0 + seconds + 120
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.25)
            key = "right" if (len(latencies) // 40) % 2 == 0 else "left"  # back and forth
            if len(monitor._cards) < 2:
                continue
            key = turn_at_edges(monitor, key)
            before = monitor.selected
            if len(app.dispatches) - ended_count(app) > 0:
                latencies.append(await key_to_frame(
                    app, clock, key, None, lambda b=before: monitor.selected != b))
            rss_max = max(rss_max, me.memory_info().rss)
            ended = sum(1 for d in app.dispatches.values() if d.outcome is not None)
            if ended == n:
                break
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        lines = sum(engine.output_lines_seen(k) for k in app.dispatches)
    engine.reflections.flush(30)
    engine.close()
    shipped = sum(1 for d in engine.snapshot() if d.outcome and d.outcome.kind == "shipped")
    import sqlite3
    reflections = sqlite3.connect(root / "sessions" / "chump_memory.db").execute(
        "SELECT COUNT(*) FROM chump_reflections").fetchone()[0]
    costs = sum(1 for d in engine.snapshot() if d.cost_usd is not None)
    tokens = sum(1 for d in engine.snapshot() if d.tokens_in)
    return {"agents": n, "lines_per_s": rate, "seconds": seconds, "wall_s": wall,
            "costs_recorded": costs, "tokens_recorded": tokens,
            "key_p95_ms": pct(latencies, 0.95), "key_median_ms": statistics.median(latencies),
            "key_max_ms": max(latencies), "presses": len(latencies),
            "steady_from_s": steady_from,
            "cpu_cores": cpu / wall, "rss_mb": rss_max / 2**20, "shipped": shipped,
            "reflections": reflections, "lines": lines}


# -------------------------------------------------------------------- soak
async def figure_soak(n: int, parallel: int, seconds: float) -> dict[str, object]:
    """Continuous mode, short-lived stream-json agents (about 2 s each), for ``seconds``:
    the console's RSS and key latency over time, compressed hours of a fleet."""
    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    state = root / "github-state.txt"
    backlog = [Gap(id=f"SOAK-{i:05d}", title=f"generated gap {i}", priority="P1", effort="s",
                   status="open") for i in range(n)]
    spawner = StreamSpawner({g.id: (STREAM_AGENT, [f"claude/{g.id.lower()}", "20", "2",
                                                   str(state), "1000"]) for g in backlog})
    writer = SqliteReflectionWriter(root / "sessions" / "chump_memory.db")
    from chump_tui.session_store import SessionStore

    store = SessionStore(root / "sessions" / "chump-tui", root)
    store.acquire()
    engine = Engine(root, spawner, SimulatedGitHub(state), writer,
                    EngineConfig(max_parallel=parallel, tick_s=1.0, soft_deadline_s=3600,
                                 log_dir=root / "sessions" / "chump-tui" / "logs"),
                    backlog=backlog, store=store)
    app = ChumpApp(setup_for(engine, backlog, root))
    me = psutil.Process()
    curve: list[tuple[float, float, int]] = []  # (seconds, RSS MB, attempts ended)
    latencies: list[tuple[float, float]] = []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("m")
        clock = FrameClock(app)
        monitor = app.screen
        t0 = time.perf_counter()
        engine.set_continuous(True)
        next_sample = 0.0
        trace = os.environ.get("BENCH_OBJECTS") == "1"
        first: tuple[Counter[str], int] | None = None
        while time.perf_counter() - t0 < seconds:
            await asyncio.sleep(0.5)
            now = time.perf_counter() - t0
            if now >= next_sample:
                curve.append((now, me.memory_info().rss / 2**20, ended_count(app)))
                next_sample += 10
                if trace and now > seconds / 3 and first is None:
                    first = (object_counts(), ended_count(app))
            if len(monitor._cards) > 1:  # type: ignore[attr-defined]
                before = monitor.selected  # type: ignore[attr-defined]
                key = turn_at_edges(monitor, "left" if len(latencies) % 2 else "right")
                latencies.append((now, await key_to_frame(
                    app, clock, key, None, lambda b=before: monitor.selected != b)))  # type: ignore[attr-defined]
        if trace and first is not None:  # what each attempt leaves behind, to stderr
            grown = object_counts() - first[0]
            attempts = ended_count(app) - first[1]
            for name, count in grown.most_common(40):
                print(f"{count / attempts:8.2f} per attempt  {name}", file=sys.stderr)
        engine.set_continuous(False)
        app.quit_with("stop_keep")
        while app.is_running:
            await asyncio.sleep(0.1)
    engine.reflections.flush(30)
    engine.close()
    store.release()
    # Warm-up is the first quarter; growth compares the last quarter with the second (the
    # median of each: single samples move by a few MB with the allocator).
    second = [mb for t, mb, _ in curve if seconds / 4 <= t < seconds / 2]
    last = [mb for t, mb, _ in curve if t >= 3 * seconds / 4]
    early = [ms for t, ms in latencies if t < seconds / 2]
    late = [ms for t, ms in latencies if t >= seconds / 2]
    return {"gaps": n, "parallel": parallel, "seconds": seconds,
            "attempts": ended_count(app), "curve": curve,
            "rss_warm_mb": statistics.median(second), "rss_end_mb": statistics.median(last),
            "rss_growth": statistics.median(last) / statistics.median(second) - 1,
            "key_p95_first_half_ms": pct(early, 0.95) if early else None,
            "key_p95_second_half_ms": pct(late, 0.95) if late else None,
            "key_p99_ms": pct([ms for _, ms in latencies], 0.99),
            "key_max_ms": max(ms for _, ms in latencies)}


def object_counts() -> Counter[str]:
    import gc

    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def ended_count(app: Any) -> int:
    return sum(1 for d in app.dispatches.values() if d.outcome is not None)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------- gh
def figure_gh(counts: list[int]) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bench-gh-"))
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "gh").write_text(f"#!/bin/sh\nexec {PY} {ROOT / 'tests/helpers/stub_gh.py'} \"$@\"\n")
    (bindir / "gh").chmod(0o755)
    per_poll: dict[str, float] = {}
    for n in counts:
        log = root / f"calls-{n}.log"
        state = root / f"state-{n}.txt"
        backlog = gaps(n, "GH")
        state.write_text("".join(f"claude/{g.id.lower()} OPEN\n" for g in backlog))
        env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", STUB_GH_LOG=str(log),
                   STUB_GH_STATE=str(state))
        engine = Engine(root, NoProcessSpawner(), GhPrProvider(root, environ=env),
                        MemoryReflectionWriter(), EngineConfig(tick_s=0.05, log_dir=root / "l"),
                        backlog=backlog)
        engine.dispatch(backlog)
        engine.start()
        deadline = time.monotonic() + 60
        while engine.gh_polls < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        engine.close()
        calls = len(log.read_text().splitlines())
        per_poll[str(n)] = calls / engine.gh_polls
    return {"calls_per_poll": per_poll}


# -------------------------------------------------------------------- kill
async def figure_kill(others: int, grace: float) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    backlog = [Gap(id="STUBBORN-0", title="ignores SIGTERM", priority="P0", effort="s",
                   status="open")]
    backlog += [Gap(id=f"OTHER-{i:02d}", title="keeps writing", priority="P1", effort="s",
                    status="open") for i in range(others)]
    scripts = {g.id: (STUBBORN_AGENT if g.id.startswith("STUBBORN") else TICKER_AGENT, [])
               for g in backlog}
    tick = 2.0
    engine = Engine(root, ScriptSpawner(scripts), SimulatedGitHub(root / "none.txt"),
                    MemoryReflectionWriter(),
                    EngineConfig(max_parallel=len(backlog), tick_s=tick, kill_grace_s=grace,
                                 soft_deadline_s=3600, log_dir=root / "logs"), backlog=backlog)
    window: dict[str, float] = {"start": float("inf"), "end": float("inf")}
    delays: list[float] = []
    lock = threading.Lock()

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, OutputLine):
            now = time.time()
            if window["start"] <= now <= window["end"]:
                with lock:
                    delays.extend(now - float(line[2:]) for line in event.lines
                                  if line.startswith("t="))

    engine.subscribe(on_event)
    app = ChumpApp(setup_for(engine, backlog, root))
    stalls: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("m")
        app.dispatch_gaps(backlog)
        while sum(1 for d in app.dispatches.values() if d.phase == "running") < len(backlog):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        await pilot.press("k")
        await pilot.pause()
        killed_at = time.time()
        window["start"] = killed_at
        await pilot.press("y")
        stubborn = "STUBBORN-0#1"
        while app.dispatches[stubborn].phase != "ended" and time.time() - killed_at < grace + 20:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append((time.perf_counter() - before - 0.01) * 1000)
        window["end"] = time.time()
        ended_after = time.time() - killed_at
        outcome = app.dispatches[stubborn].outcome
        await pilot.press("escape")
        app.quit_with("stop_keep")
        while app.is_running:
            await asyncio.sleep(0.05)
    engine.close()
    return {"others": others, "grace_s": grace, "tick_s": tick,
            "max_line_delay_s": max(delays) if delays else float("inf"),
            "lines_in_window": len(delays), "max_loop_stall_ms": max(stalls),
            "p99_loop_stall_ms": pct(stalls, 0.99),
            "killed_after_grace": bool(outcome and outcome.kind == "killed"
                                       and ended_after >= grace - 0.5),
            "kill_took_s": ended_after}


def main() -> None:
    which = sys.argv[1]
    if which == "filter":
        result = asyncio.run(figure_filter(int(sys.argv[2])))
    elif which == "flood":
        result = asyncio.run(figure_flood(int(sys.argv[2]), int(sys.argv[3]),
                                          float(sys.argv[4])))
    elif which == "stream":
        result = asyncio.run(figure_flood(int(sys.argv[2]), int(sys.argv[3]),
                                          float(sys.argv[4]), stream=True))
    elif which == "mixed":
        result = asyncio.run(figure_flood(int(sys.argv[2]), int(sys.argv[3]),
                                          float(sys.argv[4]), stream=True, mixed=True))
    elif which == "soak":
        result = asyncio.run(figure_soak(int(sys.argv[2]), int(sys.argv[3]),
                                         float(sys.argv[4])))
    elif which == "gh":
        result = figure_gh([int(x) for x in sys.argv[2].split(",")])
    elif which == "kill":
        result = asyncio.run(figure_kill(int(sys.argv[2]), float(sys.argv[3])))
    else:
        raise SystemExit(f"unknown figure {which}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
