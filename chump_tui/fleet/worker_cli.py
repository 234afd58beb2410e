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


HARNESSES = ("claude", "codex", "opencode", "gemini")


def _harnesses(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in HARNESSES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(HARNESSES)}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="Run the agents chump-tui consoles dispatch through NATS, on "
                            "this host, in this clone of the repository.")
    p.add_argument("--nats", default=os.environ.get("CHUMP_NATS_URL") or None, metavar="URL",
                   help="the NATS server (default $CHUMP_NATS_URL); nats://, tls://, a token "
                        "or user:password in the URL")
    p.add_argument("--nats-creds", type=Path, default=None, metavar="FILE",
                   help="this worker's identity: the nkey seed file chump-tui fleet init "
                        "wrote (or a .creds file); it logs in and signs with it")
    p.add_argument("--trust-console", action="append", default=[], metavar="KEY|FILE",
                   help="a console key (U…) or trust file whose requests this worker obeys "
                        "(repeatable; also $CHUMP_FLEET_TRUST)")
    p.add_argument("--insecure-broker", action="store_true",
                   help="run even though the broker lets clients without credentials in")
    p.add_argument("--repo-root", type=Path, default=None, metavar="PATH",
                   help="this host's clone (default: git rev-parse --show-toplevel)")
    p.add_argument("--base", "--base-ref", dest="base", default="origin/main", metavar="REF",
                   help="the only base it branches from; requests naming another are refused "
                        "(default origin/main)")
    p.add_argument("--backlog", type=Path, default=None, metavar="PATH",
                   help="the backlog in the repository, read at the base (default docs/gaps/ "
                        "or docs/gaps.yaml): only its pickable gaps are run")
    p.add_argument("--max-parallel", type=_positive(int, 1000), default=2, metavar="N",
                   help="agents at once on this host (default 2)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="this worker's id in chump_workers (default: the host name)")
    p.add_argument("--harness", type=_harnesses,
                   default=os.environ.get("CHUMP_HARNESS") or "claude", metavar="NAME[,NAME]",
                   help="the agent CLIs it runs, the first when a request names none "
                        "(default claude; claude, codex, opencode, gemini)")
    p.add_argument("--heartbeat", type=_positive(float, 3600), default=5.0, metavar="SECONDS",
                   help="seconds between presence records (default 5)")
    p.add_argument("--on-cut-off", choices=("pause", "stop"), default="pause",
                   help="what becomes of its agents when it cannot renew its presence for "
                        "two heartbeats (a console gives them up at four): pause them "
                        "(SIGSTOP; they go on once it is back, if their gaps did not go "
                        "elsewhere) or stop them (default pause)")
    p.add_argument("--degrade-after", type=_positive(int, 1000), default=3, metavar="N",
                   help="starts failed in a row after which it takes no work until a probe "
                        "succeeds (default 3); a failing git fetch degrades it at once")
    p.add_argument("--probe-every", type=_positive(float, 3600), default=30.0,
                   metavar="SECONDS", help="how often a degraded worker checks whether it "
                                           "can work again (default 30)")
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
    from chump_tui.fleet.identity import TrustList
    from chump_tui.fleet.roster import inbox_prefix
    from chump_tui.fleet.security import broker_check, fleet_identity
    from chump_tui.fleet.worker import Worker
    from chump_tui.repo import resolve_repo_root

    if not ns.nats:
        raise ChumpError("no NATS server: give --nats URL or set CHUMP_NATS_URL")
    repo_root = resolve_repo_root(ns.repo_root)
    name = ns.name or default_name()
    harnesses = ns.harness if isinstance(ns.harness, list) else _harnesses(ns.harness)
    trust = TrustList().add(ns.trust_console, "console").add(
        [os.environ.get("CHUMP_FLEET_TRUST", "")])
    identity = fleet_identity(ns.nats_creds, repo_root / "sessions" / "chump-tui-worker"
                              / f"{name}.nk")
    broker = Broker.from_environ(ns.nats, ns.nats_creds, f"chump-tui worker {name}",
                                 ns.replicas, identity=identity,
                                 inbox=inbox_prefix(identity.public_key),
                                 waiting=lambda line: print(visible(f"worker {name}: {line}"),
                                                            file=sys.stderr, flush=True)
                                 ).connect()
    try:
        for line in broker_check(broker, ns.insecure_broker):
            print(visible(f"worker {name}: {line}"), file=sys.stderr, flush=True)
        worker = Worker(broker, repo_root, name, ns.max_parallel, harnesses, os.environ,
                        identity, trust, ns.heartbeat, base_ref=ns.base,
                        backlog_path=ns.backlog, on_cut_off=ns.on_cut_off,
                        degrade_after=ns.degrade_after, probe_every_s=ns.probe_every)
    except ChumpError:
        broker.close()
        raise

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
