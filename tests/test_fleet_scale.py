"""The fleet-at-scale benchmark's load generator (``bench/fleet_hosts.py``) speaks the wire
the console expects: simulated hosts on a real nats-server, the real console (plain mode)
dispatching through them. Kept in CI so the figure it makes never rests on a generator
that drifted from the protocol."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet_rig import current_fleet, end_workers_and_agents, nats_server, origin_with_clones
from tests.test_fleet import console, fleet_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_worker_or_agent_outlives_its_test() -> Iterator[None]:
    yield
    end_workers_and_agents()


def test_simulated_hosts_speak_the_wire_the_console_expects(tmp_path: Path) -> None:
    gaps = "gaps:\n" + "".join(
        f"  - {{id: LOAD-{i:04d}, title: simulated {i}, priority: P1, effort: s, "
        "status: open}\n" for i in range(6))
    repos = origin_with_clones(tmp_path, "console", files={"gaps.yaml": gaps})
    env = fleet_env(tmp_path)
    end = tmp_path / "end-agents"
    end.touch()  # each agent works a few seconds, then ends
    out_path = tmp_path / "hosts.json"
    with nats_server(tmp_path) as server:
        fleet = current_fleet()
        assert fleet is not None
        hosts = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fleet_hosts.py"), server.url, str(fleet),
             str(repos["origin"]), "1", "2", "3", "20", str(end), env["STUB_GH_STATE"],
             str(out_path)], stdout=subprocess.PIPE, text=True)
        try:
            assert hosts.stdout is not None and hosts.stdout.readline().strip() == "ready"
            run = console(repos["console"], server.url, env, "--watch", "--max-parallel", "6",
                          "--tick", "0.3")
            out, err = run.communicate(timeout=120)
        finally:
            hosts.terminate()
            hosts.wait(30)
    assert run.returncode == 0, out + err
    assert "shipped=6  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out, out + err
    assert {line.rsplit(" on ", 1)[1] for line in out.splitlines()
            if line.startswith("DISPATCHED: ")} == {"w1", "w2"}
    agents = out.split("=== agents ===")[1]
    # Each agent's turns and cost, from its host's summaries.
    assert len(re.findall(r"claude +[1-9]\d* turns .* \$0\.\d{4}", agents)) == 6, agents
    assert "[fleet] dropped" not in err  # every message signed and shaped as the wire says
    published = json.loads(out_path.read_text())
    assert sum(h["agents"] for h in published.values()) == 6
    assert sum(h["exits"] for h in published.values()) == 6
    assert all(h["summaries"] > 0 and not h["refused"] for h in published.values())
