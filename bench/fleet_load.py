"""Child process for bench/run.py's fleet-at-scale figure (issue 29); prints one JSON line.

  fleet_load.py HOSTS AGENTS RATE SECONDS [PROCESSES]

A real nats-server (JetStream, configured by ``fleet init``), HOSTS simulated worker hosts
with AGENTS slots each (``bench/fleet_hosts.py``, in PROCESSES processes: they speak the
real wire, signed, but run their agents as arithmetic, so the figure is the console's and
the broker's, not this machine's ability to run a thousand processes), and the real
console (ChumpApp, headless under Pilot) dispatching HOSTS × AGENTS gaps with ``--nats
--fleet-output summary``. Each simulated agent writes RATE claude stream-json events a
second until the window is measured; then all end within a few seconds. Measured as
``fleet_figure.py`` measures (``measure_console``), plus what the generator published and
its CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet_figure import STUB_GH, measure_console  # noqa: E402
from chump_tui.cli import parse_args  # noqa: E402
from chump_tui.tui.app import ChumpApp  # noqa: E402
from chump_tui.tui.launch import repo_setup  # noqa: E402
from tests.fleet_rig import (  # noqa: E402
    FLEETS,
    NatsServer,
    free_port,
    make_fleet,
    member_args,
    member_env,
    origin_with_clones,
)

PY = sys.executable
RAMP_S = 150.0  # a thousand dispatches, each a request, a take, a claim and two reports


async def figure_load(hosts: int, per_host: int, rate: int, seconds: float,
                      processes: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-load-"))
    n = hosts * per_host
    gaps = "gaps:\n" + "".join(
        f"  - {{id: LOAD-{i:04d}, title: simulated agent {i}, priority: P1, effort: s, "
        "status: open}\n" for i in range(n))
    repos = origin_with_clones(tmp, "console", files={"gaps.yaml": gaps})
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "gh").write_text(f"#!/bin/sh\nexec {PY} {STUB_GH} \"$@\"\n")
    (bindir / "gh").chmod(0o755)
    gh_state = tmp / "gh-state.txt"
    gh_state.touch()
    os.environ.update({"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
                       "STUB_GH_STATE": str(gh_state), "STUB_GH_LOG": str(tmp / "gh.log")})
    monitor = free_port()
    names = [f"w{i + 1}" for i in range(hosts)]
    fleet = make_fleet(tmp / "fleet", names)
    FLEETS.append(fleet)
    os.environ.update(member_env())
    server = NatsServer(tmp / "js", fleet=fleet, extra=("-m", str(monitor))).start()
    generators: list[subprocess.Popen[str]] = []
    outs = []
    try:
        share = -(-hosts // processes)
        for first in range(0, hosts, share):
            out = tmp / f"hosts-{first + 1}.json"
            outs.append(out)
            generators.append(subprocess.Popen(
                [PY, str(ROOT / "bench" / "fleet_hosts.py"), server.url, str(fleet),
                 str(repos["origin"]), str(first + 1), str(min(share, hosts - first)),
                 str(per_host), str(rate), str(tmp / "end-agents"), str(gh_state), str(out)],
                stdout=subprocess.PIPE, text=True))
        for generator in generators:
            assert generator.stdout is not None
            if generator.stdout.readline().strip() != "ready":
                raise RuntimeError("a host generator did not start")
        gen_cpu = [psutil.Process(g.pid) for g in generators]
        setup = repo_setup(parse_args([
            "--backlog", str(repos["console"] / "gaps.yaml"),
            "--repo-root", str(repos["console"]), "--execute", "--nats", server.url,
            *member_args("console"), "--max-parallel", str(n), "--tick", "2",
            "--fleet-output", "summary"]))
        app = ChumpApp(setup)
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in gen_cpu)
        t0 = time.perf_counter()
        figures = await measure_console(app, setup, n, seconds, "summary", monitor, RAMP_S,
                                        measured=lambda: (tmp / "end-agents").touch())
        generator_cores = (sum(sum(p.cpu_times()[:2]) for p in gen_cpu) - cpu0) / \
            (time.perf_counter() - t0)
    finally:
        for generator in generators:
            generator.terminate()
        for generator in generators:
            generator.wait(60)
        server.stop()
    figures.pop("window")
    with sqlite3.connect(repos["console"] / "sessions" / "chump_memory.db") as db:
        rows, gaps = db.execute("SELECT COUNT(*), COUNT(DISTINCT intended_goal) "
                                "FROM chump_reflections").fetchone()
    figures["reflections"], figures["reflected_gaps"] = rows, gaps
    published: dict[str, int] = {}
    for out in outs:
        for host in json.loads(out.read_text()).values():
            for name, value in host.items():
                if isinstance(value, int):
                    published[name] = published.get(name, 0) + value
    return {"hosts": hosts, "agents": n, "rate": rate, "seconds": seconds, **figures,
            "generator_cores": generator_cores, "generator": published}


def main() -> None:
    hosts, per_host, rate = (int(a) for a in sys.argv[1:4])
    seconds = float(sys.argv[4])
    processes = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    print(json.dumps(asyncio.run(figure_load(hosts, per_host, rate, seconds, processes))))


if __name__ == "__main__":
    main()
