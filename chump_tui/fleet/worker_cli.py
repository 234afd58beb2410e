"""``chump-tui worker`` flags and start-up: one line and exit 2 on anything wrong."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from chump_tui.errors import ChumpError
from chump_tui.outside_text import visible

PROG = "chump-tui worker"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> argparse.NoReturn:  # type: ignore[name-defined]
        self.exit(2, f"{PROG}: error: {message} (try --help)\n")


def _positive(kind: type[int] | type[float], high: float) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"must be above 0 and at most {high:g}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="Run the agents chump-tui consoles dispatch through NATS, on "
                            "this host, in this clone of the repository.")
    p.add_argument("--nats", default=os.environ.get("CHUMP_NATS_URL") or None, metavar="URL",
                   help="the NATS server (default $CHUMP_NATS_URL); nats://, tls://, a token "
                        "or user:password in the URL")
    p.add_argument("--nats-creds", type=Path, default=None, metavar="FILE",
                   help="NATS credentials file (.creds)")
    p.add_argument("--repo-root", type=Path, default=None, metavar="PATH",
                   help="this host's clone (default: git rev-parse --show-toplevel)")
    p.add_argument("--max-parallel", type=_positive(int, 1000), default=2, metavar="N",
                   help="agents at once on this host (default 2)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="this worker's id in chump_workers (default: the host name)")
    p.add_argument("--harness", default=os.environ.get("CHUMP_HARNESS") or "claude",
                   choices=("claude", "codex", "opencode", "gemini"),
                   help="the agent CLI when a request names none (default claude)")
    p.add_argument("--heartbeat", type=_positive(float, 3600), default=5.0, metavar="SECONDS",
                   help="seconds between presence records (default 5)")
    p.add_argument("--replicas", type=_positive(int, 5), default=None, metavar="N",
                   help="replicas of the streams and buckets it creates (3 on a cluster; "
                        "default $CHUMP_NATS_REPLICAS or 1)")
    return p


def default_name() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64].strip("-") or "worker"


def run_worker_cli(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    try:
        return _run(ns)
    except ChumpError as exc:
        print(visible(f"{PROG}: {exc}"), file=sys.stderr)
        return 2


def _run(ns: argparse.Namespace) -> int:
    from chump_tui.fleet.broker import Broker
    from chump_tui.fleet.worker import Worker
    from chump_tui.repo import resolve_repo_root

    if not ns.nats:
        raise ChumpError("no NATS server: give --nats URL or set CHUMP_NATS_URL")
    repo_root = resolve_repo_root(ns.repo_root)
    name = ns.name or default_name()
    broker = Broker.from_environ(ns.nats, ns.nats_creds, f"chump-tui worker {name}",
                                 ns.replicas).connect()
    worker = Worker(broker, repo_root, name, ns.max_parallel, ns.harness, os.environ,
                    ns.heartbeat)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    finally:
        broker.close()
    print(f"worker {name}: stopped; {len(worker.agents)} agent(s) left running "
          "(re-attached when it starts again)", flush=True)
    return 0
