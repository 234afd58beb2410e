"""Child process for bench/run.py's fleet figure; prints one JSON line.

  fleet WORKERS AGENTS RATE SECONDS [full|summary]
  fleet probe URL SUBJECT OUT     (the broker-side probe, in a process of its own)

A real nats-server (JetStream), WORKERS real ``chump-tui worker`` processes, each with its
own clone of a temp origin, AGENTS agents on each writing claude stream-json at RATE events/s
for SECONDS (every tenth event an assistant text carrying the time it was written), and the
real console (ChumpApp, headless under Pilot) dispatching them all with ``--nats``. Measured:
an agent's line to the first frame the console composes after the line reached it; key to
redraw; the console's CPU; messages and bytes into the broker per agent per second (its
/varz). With ``summary`` the console asks for summaries (``--fleet-output summary``): the
line figure is then the selected agent's (the one whose whole output comes), the others'
lines arriving coalesced in their summaries.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.console_figures import (  # noqa: E402
    FrameClock,
    _cpu,
    key_to_frame,
    pct,
    turn_at_edges,
)
from chump_tui.cli import parse_args  # noqa: E402
from chump_tui.events import DispatchChanged, EngineEvent, OutputLine  # noqa: E402
from chump_tui.fleet import wire  # noqa: E402
from chump_tui.tui.app import ChumpApp, ConsoleSetup  # noqa: E402
from chump_tui.tui.launch import repo_setup  # noqa: E402
from tests.fleet_rig import (  # noqa: E402
    FLEETS,
    NatsServer,
    fleet_client,
    free_port,
    make_fleet,
    member_args,
    member_env,
    origin_with_clones,
    start_worker,
)

PY = sys.executable
STUB_GH = ROOT / "tests" / "helpers" / "stub_gh.py"

# The agent: claude's stream-json, RATE events/s in bursts every 100 ms (a tool call and its
# 4 KB result), an assistant text "t=<time written>" in each burst, then it "merges".
FLEET_AGENT = r"""#!{py}
import json, os, subprocess, sys, time
rate, seconds = int(os.environ["BENCH_RATE"]), float(os.environ["BENCH_SECONDS"])
branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
out = sys.stdout
def emit(obj): out.write(json.dumps(obj) + "\n")
emit({{"type": "system", "subtype": "init", "session_id": branch, "model": "bench"}})
end, i = time.time() + seconds, 0
while time.time() < end:
    for _ in range(max(1, rate // 10 - 1) // 2 or 1):
        i += 1
        emit({{"type": "assistant", "message": {{"id": f"m{{i}}", "content": [{{
              "type": "tool_use", "id": f"t{{i}}", "name": "Bash",
              "input": {{"command": f"cargo test -p c{{i % 9}}"}}}}],
              "usage": {{"input_tokens": 1000 + i, "output_tokens": 50}}}}}})
        emit({{"type": "user", "message": {{"content": [{{"type": "tool_result",
              "tool_use_id": f"t{{i}}", "content": "x" * 4000, "is_error": False}}]}}}})
    emit({{"type": "assistant", "message": {{"id": f"s{{i}}", "content": [{{"type": "text",
          "text": f"t={{time.time():.4f}}"}}]}}}})
    out.flush()
    time.sleep(0.1)
emit({{"type": "result", "subtype": "success", "is_error": False, "num_turns": i,
      "total_cost_usd": 0.0001 * i, "result": "done", "duration_ms": 1000,
      "usage": {{"input_tokens": 1000 * i, "output_tokens": 50 * i}}}})
out.flush()
with open(os.environ["STUB_GH_STATE"], "a") as fh:
    fh.write(f"{{branch}} MERGED\n")
"""

RAMP_S = 40.0
STAMP = re.compile(r"t=(\d{10}\.\d{4})")


def broker_in(monitor_port: int) -> tuple[int, int]:
    """Messages and bytes the server took in so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as r:
        varz = json.load(r)
    return int(varz["in_msgs"]), int(varz["in_bytes"])


async def figure_fleet(workers: int, per_worker: int, rate: int, seconds: float,
                       output: str = "full") -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    names = [f"w{i + 1}" for i in range(workers)]
    n = workers * per_worker
    gaps = "gaps:\n" + "".join(
        f"  - {{id: FLEET-{i:03d}, title: fleet agent {i}, priority: P1, effort: s, "
        "status: open}\n" for i in range(n))
    # Committed: each worker runs only what its own backlog at origin/main holds.
    repos = origin_with_clones(tmp, "console", *names, files={"gaps.yaml": gaps})
    agent = tmp / "fleet-agent"
    agent.write_text(FLEET_AGENT.format(py=PY))
    agent.chmod(0o755)
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "gh").write_text(f"#!/bin/sh\nexec {PY} {STUB_GH} \"$@\"\n")
    (bindir / "gh").chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "STUB_GH_STATE": str(tmp / "gh-state.txt"), "STUB_GH_LOG": str(tmp / "gh.log"),
           "CHUMP_CLAUDE_BIN": str(agent), "BENCH_RATE": str(rate),
           # The agents write past the measured window: 90 of them take a while to start.
           "BENCH_SECONDS": str(seconds + RAMP_S), "PYTHONPATH": str(ROOT)}
    (tmp / "gh-state.txt").touch()
    os.environ.update(env)
    monitor = free_port()
    fleet = make_fleet(tmp / "fleet", names)  # identities, as an operator runs a fleet
    FLEETS.append(fleet)
    os.environ.update(member_env())
    server = NatsServer(tmp / "js", fleet=fleet, extra=("-m", str(monitor))).start()
    hosts = [start_worker(server.url, repos[name], name, env, max_parallel=per_worker,
                          heartbeat=2.0) for name in names]
    setup = repo_setup(parse_args([
        "--backlog", str(repos["console"] / "gaps.yaml"), "--repo-root", str(repos["console"]),
        "--execute", "--nats", server.url, *member_args("console"), "--max-parallel", str(n),
        "--tick", "2", "--fleet-output", output]))
    app = ChumpApp(setup)
    # The same reports as a plain subscriber gets them: how much of the latency is the
    # worker and the broker, how much the console's mirror, follower and frame. In a
    # process of its own: decoding every report here would count in the console's CPU.
    probe_out = tmp / "probe.json"
    probe = subprocess.Popen([PY, __file__, "probe", server.url, wire.agents_subject(
        wire.repo_key(str(repos["origin"])), "*"), str(probe_out), str(fleet)])
    try:
        figures = await measure_console(app, setup, n, seconds, output, monitor, RAMP_S - 5)
    finally:
        for host in hosts:
            host.stop()
        probe.terminate()
        probe.wait(30)
        server.stop()
    window = figures.pop("window")
    at_broker = [waited for arrived, waited in json.loads(probe_out.read_text())
                 if window[0] <= arrived <= window[1]]
    return {"workers": workers, "agents": n, "rate": rate, "seconds": seconds, **figures,
            "broker_p95_ms": pct([x * 1000 for x in at_broker], 0.95),
            "broker_median_ms": pct([x * 1000 for x in at_broker], 0.5)}


async def measure_console(app: ChumpApp, setup: ConsoleSetup, n: int, seconds: float,
                          output: str, monitor_port: int, ramp_s: float,
                          measured: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Dispatch the backlog's N gaps through the fleet from the console (headless), then
    for SECONDS: key to redraw while the selection moves half the time, the selected
    agent's lines to the frame that shows them the other half (with ``summary`` only the
    selected agent's whole output comes), the console's CPU and the broker's intake; then
    wait (up to RAMP_S + 120 s) for every outcome. ``window``: the measured span (epoch)."""
    engine = setup.engine
    arrivals: list[tuple[float, float]] = []  # (seconds since written, perf time of arrival)
    selected: list[str | None] = [None]
    selected_since = [0.0]  # lines written before then are its last 64 KB, sent again

    requested: dict[str, float] = {}  # row -> when its request went out (the ramp's story)
    answered: list[float] = []  # request -> its agent running, seconds

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, DispatchChanged):
            if event.why == "requested":
                requested.setdefault(event.dispatch.key, time.perf_counter())
            elif event.why == "dispatched" and event.dispatch.key in requested:
                answered.append(time.perf_counter() - requested[event.dispatch.key])
            return
        if isinstance(event, OutputLine):
            if output == "summary" and event.key != selected[0]:
                return  # the others' lines come in their summaries, coalesced
            now, perf = time.time(), time.perf_counter()
            for text in event.lines:
                found = STAMP.search(text)
                if found and float(found.group(1)) >= selected_since[0]:
                    arrivals.append((now - float(found.group(1)), perf))

    engine.subscribe(on_event)
    me = psutil.Process()
    keys: list[float] = []
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.press("m")
            app.dispatch_gaps(setup.backlog.gaps)
            started = time.perf_counter()
            while sum(1 for d in app.dispatches.values() if d.phase == "running") < n:
                if time.perf_counter() - started > ramp_s:
                    running = sum(1 for d in app.dispatches.values() if d.phase == "running")
                    raise RuntimeError(f"only {running} of {n} running after {ramp_s:.0f} s")
                await asyncio.sleep(0.2)
            ramp = time.perf_counter() - started
            sent = sorted(t - started for t in requested.values())
            clock = FrameClock(app)
            monitor_screen = app.screen
            cpu0, t0, (msgs0, bytes0) = _cpu(), time.perf_counter(), broker_in(monitor_port)
            window = (time.time(), time.time() + seconds)
            arrivals.clear()
            while time.perf_counter() - t0 < seconds:
                await asyncio.sleep(0.25)
                if selected[0] != monitor_screen.selected:  # type: ignore[attr-defined]
                    selected[0] = monitor_screen.selected  # type: ignore[attr-defined]
                    selected_since[0] = time.time()
                if len(monitor_screen._cards) < 2:  # type: ignore[attr-defined]
                    continue
                if output == "summary" and int(time.perf_counter() - t0) % 10 < 5:
                    continue  # half the time the selection stays: its agent's lines timed
                key = turn_at_edges(monitor_screen, "right" if (len(keys) // 20) % 2 == 0
                                    else "left")
                before = monitor_screen.selected  # type: ignore[attr-defined]
                keys.append(await key_to_frame(
                    app, clock, key, None,
                    lambda b=before: monitor_screen.selected != b))  # type: ignore[attr-defined]
            wall = time.perf_counter() - t0
            cpu = (_cpu() - cpu0) / wall
            msgs, in_bytes = broker_in(monitor_port)
            msgs, in_bytes = msgs - msgs0, in_bytes - bytes0
            frames = sorted(clock.frames)
            shown: list[float] = []
            for waited, perf in list(arrivals):
                later = next((f for f in frames if f >= perf), None)
                if later is not None:
                    shown.append((waited + later - perf) * 1000)
            rss = me.memory_info().rss / 2**20
            measured()
            deadline = time.perf_counter() + ramp_s + 120
            while any(d.outcome is None for d in app.dispatches.values()):
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.5)
            outcomes = [d.outcome.kind for d in app.dispatches.values()
                        if d.outcome is not None]
            shipped = outcomes.count("shipped")
            costs = sum(1 for d in app.dispatches.values() if d.cost_usd is not None)
            attempts = len(app.dispatches)
            app.quit_with("stop_keep")
    finally:
        engine.close()
        if setup.store is not None:
            setup.store.release()
    return {"line_p95_ms": pct(shown, 0.95), "line_median_ms": pct(shown, 0.5),
            "lines_timed": len(shown), "key_p95_ms": pct(keys, 0.95), "keys": len(keys),
            "cpu_cores": cpu, "rss_mb": rss, "broker_msgs_per_agent_s": msgs / n / wall,
            "broker_bytes_per_agent_s": in_bytes / n / wall, "output": output,
            "ramp_s": ramp, "ramp_half_requested_s": pct(sent, 0.5) if sent else 0.0,
            "ramp_all_requested_s": sent[-1] if sent else 0.0,
            "request_to_running_p95_s": pct(answered, 0.95) if answered else 0.0,
            "attempts": attempts, "outcomes": len(outcomes),
            "shipped": shipped, "costs_recorded": costs, "window": window}


def probe(url: str, subject: str, out_path: str, fleet: str) -> None:
    """Until SIGTERM: (arrival time, seconds since written) of each stamped line, read from
    the stream as the console reads it (as the fleet's tester console)."""
    import signal
    import threading

    seen: list[tuple[float, float]] = []
    done = threading.Event()

    def on_report(subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        now = time.time()
        for report in wire.decode_reports(data):
            seen.extend((now, now - float(s)) for s in STAMP.findall(
                report.data.decode("utf-8", "replace")))

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    broker = fleet_client(url, Path(fleet))
    broker.follow_stream(subject, wire.AGENTS_STREAM, on_report, None)
    done.wait()
    broker.close()
    Path(out_path).write_text(json.dumps(seen))


def main() -> None:
    if sys.argv[1] == "probe":
        probe(*sys.argv[2:6])
        return
    workers, per_worker, rate, seconds = (int(sys.argv[1]), int(sys.argv[2]),
                                          int(sys.argv[3]), float(sys.argv[4]))
    output = sys.argv[5] if len(sys.argv) > 5 else "full"
    print(json.dumps(asyncio.run(figure_fleet(workers, per_worker, rate, seconds, output))))


if __name__ == "__main__":
    main()
