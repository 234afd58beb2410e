"""The fleet under faults, on a real nats-server with real workers and clones: a full
fleet queues, two consoles share one fleet, a broker that stalls mid-dispatch costs no
gap, a worker cut off from the broker pauses its agents before the console gives them
up, a broken host marks itself degraded and the others take its work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from chump_tui.fleet import wire
from tests.conftest import saved_text, wait_for
from tests.fleet_rig import (
    end_workers_and_agents,
    member_args,
    member_env,
    nats_server,
    origin_with_clones,
    start_worker,
    started_console,
)
from tests.partition import host_link
from tests.test_fleet import console, fleet_env, fleet_gaps

if TYPE_CHECKING:
    from chump_tui.fleet.broker import Broker


@pytest.fixture(autouse=True)
def no_worker_or_agent_outlives_its_test() -> Iterator[None]:
    yield
    end_workers_and_agents()


def shipped_once_each(out: str, n: int) -> None:
    for i in range(1, n + 1):
        assert out.count(f"SHIPPED   claude/fleet-00{i}  PR #") == 1, out


def test_a_full_fleet_queues_and_ships_every_gap(tmp_path: Path) -> None:
    """One slot in the whole fleet, four gaps at once: each waits (QUEUED) for the slot,
    none fails, and the run ends 0."""
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(4)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "2"}
    with nats_server(tmp_path) as server:
        w1 = start_worker(server.url, repos["w1"], "w1", env, max_parallel=1)
        run = console(repos["console"], server.url, env, "--watch", "--continuous",
                      "--max-parallel", "4", "--tick", "0.3")
        out, err = run.communicate(timeout=240)
        assert run.returncode == 0, out + err
        shipped_once_each(out, 4)
        assert "shipped=4  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out, out
        assert "queued: waiting for a host: 1 up for this repository, 1/1 slots busy" in err \
            or "queued: waiting for a host" in err, err
        assert "DISPATCH-FAILED" not in err
        assert w1.output().count(" as PID ") == 4  # never more than its one slot at once
        w1.stop()


def test_two_consoles_on_one_fleet_ship_every_gap_once_and_both_exit_0(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console", "console2", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(6)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "2"}
    with nats_server(tmp_path) as server:
        workers = [start_worker(server.url, repos[n], n, env, max_parallel=2)
                   for n in ("w1", "w2")]
        args = ("--watch", "--continuous", "--max-parallel", "4", "--tick", "0.3")
        first = console(repos["console"], server.url, env, *args)
        second = console_as("tester", repos["console2"], server.url, env, *args)
        outs = [p.communicate(timeout=240) for p in (first, second)]
        for p, (out, err) in zip((first, second), outs, strict=True):
            assert p.returncode == 0, out + err
            assert "DISPATCH-FAILED" not in err and "spawn_failures=0" in out, out + err
        both = outs[0][0] + outs[1][0]
        shipped_once_each(both, 6)  # every gap by exactly one of them
        ran = "".join(w.output() for w in workers)
        for i in range(1, 7):
            assert len(re.findall(rf"FLEET-00{i} \(\S+\) as PID", ran)) == 1, ran
        for w in workers:
            w.stop()


def console_as(name: str, clone: Path, url: str, env: dict[str, str],
               *args: str) -> subprocess.Popen[str]:
    """Plain mode on the fleet as its console identity ``name`` (the fleet has two)."""
    return started_console(subprocess.Popen(
        [sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", "gaps.yaml", "--execute",
         "--nats", url, *member_args(name), *args], cwd=clone,
        env={**os.environ, **member_env(), **env}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))


def console_logged(clone: Path, url: str, env: dict[str, str], log: Path,
                   *args: str) -> subprocess.Popen[str]:
    """Plain mode as the fleet's console, its stderr in ``log`` (read while it runs)."""
    with log.open("w") as fh:
        return started_console(subprocess.Popen(
            [sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", "gaps.yaml",
             "--execute", "--nats", url, *member_args("console"), *args], cwd=clone,
            env={**os.environ, **member_env(), **env}, text=True, stdout=subprocess.PIPE,
            stderr=fh))


def queued_requests(broker: Broker) -> int:
    """Dispatch requests on the work queue that no worker took yet."""
    info = broker.run(broker.js.stream_info(wire.DISPATCH_STREAM))
    return int(info.state.messages)


def test_requests_nobody_takes_are_fenced_and_sent_again(tmp_path: Path) -> None:
    """The only host freezes (not yet silent long enough to be given up): the console's
    requests sit unanswered, are fenced after 10 s (no worker may start them late) and sent
    again with back-off; once the host thaws, every gap ships once, none failed."""
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(3)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "1"}
    log = tmp_path / "console.err"
    with nats_server(tmp_path) as server:
        w1 = start_worker(server.url, repos["w1"], "w1", env, 2, 5.0)  # silent after 20 s
        w1.process.send_signal(signal.SIGSTOP)
        try:
            run = console_logged(repos["console"], server.url, env, log, "--watch",
                                 "--continuous", "--max-parallel", "2", "--tick", "0.3")
            wait_for(lambda: "retrying in 1s: no worker took it within 10s" in log.read_text(),
                     60, "the console giving up on its requests and sending them again")
        finally:
            w1.process.send_signal(signal.SIGCONT)
        out, _ = run.communicate(timeout=180)
        err = log.read_text()
        assert run.returncode == 0, out + err
        shipped_once_each(out, 3)
        assert "spawn_failures=0" in out and "DISPATCH-FAILED" not in err, out + err
        # The fenced requests were refused when the thawed host got to them; none ran.
        assert w1.output().count(" as PID ") == 3, w1.output()
        assert "its console gave up waiting" in w1.output() or \
            "expired before a worker took it" in w1.output(), w1.output()
        w1.stop()


def test_a_broker_that_stalls_mid_dispatch_costs_no_gap(tmp_path: Path) -> None:
    """The broker stops answering for 12 s while requests wait on it (a leader election, a
    partition of the console's node): the console's calls time out, are retried with
    back-off within the dispatch deadline, and every gap ships once; none failed."""
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(3)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "1"}
    log = tmp_path / "console.err"
    with nats_server(tmp_path) as server:
        assert server.process is not None
        w1 = start_worker(server.url, repos["w1"], "w1", env, 2, 5.0)
        broker = server.client()
        w1.process.send_signal(signal.SIGSTOP)  # the requests wait on the queue
        try:
            run = console_logged(repos["console"], server.url, env, log, "--watch",
                                 "--continuous", "--max-parallel", "2", "--tick", "0.3")
            wait_for(lambda: queued_requests(broker) >= 2, 60, "two requests on the queue")
            server.process.send_signal(signal.SIGSTOP)
            w1.process.send_signal(signal.SIGCONT)  # up again, but cut off like the rest
            try:
                wait_for(lambda: "retrying in" in log.read_text()
                         and "the broker" in log.read_text(), 60,
                         "the console retrying through the stalled broker")
            finally:
                server.process.send_signal(signal.SIGCONT)
        finally:
            w1.process.send_signal(signal.SIGCONT)
        out, _ = run.communicate(timeout=240)
        err = log.read_text()
        assert run.returncode == 0, out + err
        shipped_once_each(out, 3)
        assert "spawn_failures=0" in out and "DISPATCH-FAILED" not in err, out + err
        assert w1.output().count(" as PID ") == 3, w1.output()
        broker.close()
        w1.stop()


def agent_state(pid: int) -> str:
    """psutil's status of the agent ('stopped' while paused), or 'gone'."""
    try:
        return str(psutil.Process(pid).status())
    except psutil.Error:
        return "gone"


def test_a_cut_off_worker_pauses_its_agent_before_the_console_gives_it_up(
        tmp_path: Path) -> None:
    """w1 runs in a network namespace of its own (where the machine allows: else behind a
    proxy) and its link goes down: packets dropped, no FIN, no RST. It pauses its agent
    within two heartbeats, before the console gives it up as LOST (four) and runs the gap
    on w2; at no moment do two agents work the gap. When the link comes back, w1 finds the
    gap's claim gone and its console not taking the agent back, and stops it."""
    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(1)})
    env = fleet_env(tmp_path)
    session = repos["console"] / "sessions" / "chump-tui"

    def saved() -> str:
        return saved_text(session)

    with nats_server(tmp_path, listen="0.0.0.0") as server:
        link = host_link(server.port)
        try:
            w1 = start_worker(link.url(server.port), repos["w1"], "w1",
                              {**env, "FAKE_AGENT_MODE": "hang"}, 1, 1.0, wrap=link.wrap)
            run = console(repos["console"], server.url, env, "--watch", "--continuous",
                          "--max-parallel", "1", "--tick", "0.3")
            wait_for(lambda: " as PID " in w1.output(), 60, "the agent on w1")
            pid = int(w1.output().split(" as PID ")[1].split()[0])
            w2 = start_worker(server.url, repos["w2"], "w2",
                              {**env, "FAKE_AGENT_SECONDS": "3"}, 1, 1.0)
            link.cut()  # its heartbeats and reports go nowhere
            try:
                # Paused before the console judges it: LOST is not in the state file yet.
                wait_for(lambda: agent_state(pid) == psutil.STATUS_STOPPED
                         or "LOST (host w1" in saved(), 30, "w1's agent paused or given up")
                assert agent_state(pid) == psutil.STATUS_STOPPED, w1.output()
                assert "LOST (host w1" not in saved()
                assert "cut off from the broker" in w1.output()
                wait_for(lambda: " as PID " in w2.output(), 60, "the gap run again on w2")
                w2_pid = int(w2.output().split(" as PID ")[1].split()[0])

                def never_both() -> bool:  # sampled until w2's agent is done
                    w1_works = agent_state(pid) not in ("gone", psutil.STATUS_STOPPED,
                                                        psutil.STATUS_ZOMBIE)
                    w2_works = agent_state(w2_pid) not in ("gone", psutil.STATUS_ZOMBIE)
                    assert not (w1_works and w2_works), "two agents on one gap"
                    return not w2_works

                wait_for(never_both, 60, "w2's agent done, w1's paused all along")
            finally:
                link.heal()
            wait_for(lambda: agent_state(pid) in ("gone", psutil.STATUS_ZOMBIE), 90,
                     "w1's paused agent stopped once it is back")
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, out + err
            assert "KILLED    claude/fleet-001  LOST (host w1 silent" in out, out
            assert "SHIPPED   claude/fleet-001  PR #" in out
            assert "stopping it" in w1.output(), w1.output()
            for w in (w1, w2):
                w.stop()
        finally:
            link.close()


def test_a_partitioned_host_with_continuous_costs_no_gap(tmp_path: Path) -> None:
    """Two hosts, six gaps, --continuous; w1's link goes down (a network namespace's veth
    where allowed, else a proxy) for longer than the console's silence window, then comes
    back. Every gap ships once, none is DISPATCH-FAILED, the run exits 0."""
    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(6)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "4"}
    log = tmp_path / "console.err"
    with nats_server(tmp_path, listen="0.0.0.0") as server:
        link = host_link(server.port)
        try:
            w1 = start_worker(link.url(server.port), repos["w1"], "w1", env, 2, 1.0,
                              wrap=link.wrap)
            w2 = start_worker(server.url, repos["w2"], "w2", env, 2, 1.0)
            run = console_logged(repos["console"], server.url, env, log, "--watch",
                                 "--continuous", "--max-parallel", "4", "--tick", "0.3")
            wait_for(lambda: " as PID " in w1.output(), 60, "an agent on w1")
            link.cut()
            try:
                wait_for(lambda: "LOST" in log.read_text(), 60, "w1's agents given up")
            finally:
                link.heal()
            out, _ = run.communicate(timeout=240)
            err = log.read_text()
            assert run.returncode == 0, out + err
            shipped_once_each(out, 6)
            assert "spawn_failures=0" in out and "DISPATCH-FAILED" not in err, out + err
            for w in (w1, w2):
                w.stop()
        finally:
            link.close()


def test_a_broken_host_marks_itself_degraded_and_the_others_take_its_work(
        tmp_path: Path) -> None:
    """w1 cannot make worktrees (a file where its worktrees go): after two failed starts it
    says it is degraded in its presence record and takes no more work; w2 runs every gap.
    Once the cause is gone, its probe succeeds and it takes work again."""
    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(4)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "1"}
    blocker = repos["w1"] / ".claude" / "worktrees"
    blocker.parent.mkdir()
    blocker.write_text("not a directory\n")  # a read-only root, as root can feel it
    with nats_server(tmp_path) as server:
        w1 = start_worker(server.url, repos["w1"], "w1", env, 2, 0.5,
                          "--degrade-after", "2", "--probe-every", "2")
        run = console(repos["console"], server.url, env, "--watch", "--continuous",
                      "--max-parallel", "2", "--tick", "0.3")
        wait_for(lambda: "degraded:" in w1.output(), 60, "w1 degraded")
        broker = server.client()
        try:
            def w1_record() -> wire.WorkerRecord:
                raw = broker.kv_items(broker.workers_bucket)["w1"]
                return wire.WorkerRecord.from_bytes(raw)

            wait_for(lambda: "starts failed in a row" in w1_record().degraded, 10,
                     "the reason in w1's presence record")
            w2 = start_worker(server.url, repos["w2"], "w2", env, 2, 0.5)
            out, err = run.communicate(timeout=240)
            assert run.returncode == 0, out + err
            shipped_once_each(out, 4)
            assert "spawn_failures=0" in out and "DISPATCH-FAILED" not in err, out + err
            assert w1.output().count(" as PID ") == 0
            assert w2.output().count(" as PID ") == 4
            assert w1.output().count("refused") == 2, w1.output()  # no third request
            blocker.unlink()
            wait_for(lambda: "healthy again" in w1.output(), 30, "w1's probe succeeding")
            wait_for(lambda: not w1_record().degraded, 10, "w1's record healthy")
        finally:
            broker.close()
        for w in (w1, w2):
            w.stop()


def test_a_node_partitioned_off_a_three_node_cluster_costs_no_gap(tmp_path: Path) -> None:
    """A 3-node cluster (streams at 3 replicas); w2 is given only one node's URL, and that
    node stops answering (SIGSTOP: a partition; its streams' leaders are re-elected
    elsewhere meanwhile, the others answer 503 and time out until then). w2 pauses its
    agents; then either it fails over to a node the cluster told it about and resumes
    them, or the console gives them up and runs their gaps on w1 (both were seen). Every
    gap ships once with --continuous, none fails, the run exits 0."""
    from tests.fleet_rig import fleet_client, nats_cluster, wait_for_jetstream

    repos = origin_with_clones(tmp_path, "console", "w1", "w2",
                               files={"gaps.yaml": fleet_gaps(5)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "10", "CHUMP_NATS_REPLICAS": "3"}
    log = tmp_path / "console.err"
    with nats_cluster(tmp_path) as cluster:
        wait_for_jetstream(cluster)
        # Upstream's buckets have one replica (its configuration, or upstream cannot bind
        # to them): the node holding one is the fleet's single point (README). Partition
        # a node that holds neither.
        probe = fleet_client(cluster.url, cluster.servers[0].fleet, replicas=3)
        try:
            holders = {probe.run(probe.js.stream_info(f"KV_{bucket}")).cluster.leader
                       for bucket in (wire.GAP_BUCKET, wire.WORKERS_BUCKET)}
        finally:
            probe.close()
        cut = next(i for i in range(3) if f"n{i}" not in holders)
        node = [s.url for s in cluster.servers]
        others = ",".join(url for i, url in enumerate(node) if i != cut)
        # Heartbeats of 3 s: the cluster's failover took more than 4 s on a loaded 2-core
        # machine; the fence is at 6 s, the console's window at 12 s.
        w1 = start_worker(others, repos["w1"], "w1", env, 2, 3.0)
        w2 = start_worker(node[cut], repos["w2"], "w2", env, 2, 3.0)
        run = console_logged(repos["console"], others, env, log, "--watch", "--continuous",
                             "--max-parallel", "4", "--tick", "0.3")
        wait_for(lambda: " as PID " in w2.output(), 60, "an agent on w2")
        partitioned = cluster.servers[cut].process
        assert partitioned is not None
        partitioned.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: "cut off from the broker" in w2.output(), 60, "w2 pausing")
            wait_for(lambda: "LOST" in log.read_text() or "back in touch" in w2.output(), 60,
                     "w2's agents given up, or w2 back through another node")
        finally:
            partitioned.send_signal(signal.SIGCONT)
        out, _ = run.communicate(timeout=300)
        err = log.read_text()
        assert run.returncode == 0, out + err
        shipped_once_each(out, 5)
        assert "spawn_failures=0" in out and "DISPATCH-FAILED" not in err, out + err
        for w in (w1, w2):
            w.stop()


def test_a_console_killed_while_its_dispatch_waits_for_a_host_dispatches_it_when_back(
        tmp_path: Path) -> None:
    """No host is up: the dispatch waits (QUEUED), the console is killed with -9. The next
    console finds the row still being dispatched, hears nothing of its request, and sends
    it again once a host is up: the gap ships once, nothing failed."""
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(1)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_SECONDS": "1"}
    log = tmp_path / "console.err"
    state = repos["console"] / "sessions" / "chump-tui" / "state.json"
    with nats_server(tmp_path) as server:
        first = console_logged(repos["console"], server.url, env, log, "--watch",
                               "--tick", "0.3")
        wait_for(lambda: "waiting for a host" in saved_text(state.parent), 60,
                 "the row saved as QUEUED")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        w1 = start_worker(server.url, repos["w1"], "w1", env)
        again = console_logged(repos["console"], server.url, env, tmp_path / "again.err",
                               "--watch", "--tick", "0.3")
        out, _ = again.communicate(timeout=180)
        err = (tmp_path / "again.err").read_text()
        assert again.returncode == 0, out + err
        assert "FLEET-001#1: was being dispatched when the console stopped" in err, err
        assert out.count("SHIPPED   claude/fleet-001  PR #") == 1, out
        assert "spawn_failures=0" in out, out
        assert w1.output().count(" as PID ") == 1
        w1.stop()
