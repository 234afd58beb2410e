"""``chump-tui fleet init | add | rotate``: flags, and what to run next (one line and exit 2
on anything wrong)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chump_tui.errors import ChumpError
from chump_tui.outside_text import visible

PROG = "chump-tui fleet"
DEFAULT_DIR = Path("chump-fleet")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> argparse.NoReturn:  # type: ignore[name-defined]
        self.exit(2, f"{self.prog}: error: {message} (try --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="Identities for a chump-tui fleet and the nats-server configuration "
                            "that admits only them (see README 'Across machines').")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    init = sub.add_parser("init", help="a new fleet directory: keys, trust file, server config")
    init.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR",
                      help=f"where to write it (default ./{DEFAULT_DIR})")
    init.add_argument("--console", action="append", default=[], metavar="NAME",
                      help="a console identity (repeatable; default: one named console)")
    init.add_argument("--worker", action="append", default=[], metavar="NAME",
                      help="a worker identity, named as its --name (repeatable; default: "
                           "worker-1)")
    init.add_argument("--agent", action="append", default=[], metavar="NAME",
                      help="an upstream chump-coord agent that may claim gaps (repeatable)")
    add = sub.add_parser("add", help="one more identity")
    add.add_argument("role", choices=("console", "worker", "agent"))
    add.add_argument("name")
    add.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR")
    rotate = sub.add_parser("rotate", help="a new key for an identity (the old one stops "
                                           "working once the server reloads)")
    rotate.add_argument("name")
    rotate.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR")
    return p


def run_fleet_cli(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    try:
        for line in _run(ns):
            print(visible(line))
    except (ChumpError, OSError) as exc:
        print(visible(f"{PROG}: {exc}"), file=sys.stderr)
        return 2
    return 0


def _run(ns: argparse.Namespace) -> list[str]:
    from chump_tui.fleet.roster import SERVER_CONF, TRUST, add_member, fleet_dir, init_fleet

    directory: Path = ns.dir
    if ns.command == "init":
        members = init_fleet(directory, ns.console or ["console"], ns.worker or ["worker-1"],
                             ns.agent)
        lines = [f"{directory}/: {len(members)} identities, {TRUST}, {SERVER_CONF}"]
        lines += [f"  {m.role} {m.name}: {directory / (m.name + '.nk')}  {m.key}"
                  for m in members]
        return lines + next_steps(directory, [m.role for m in members],
                                  [m.name for m in members])
    fleet_dir(directory)
    if ns.command == "add":
        member = add_member(directory, ns.role, ns.name)
        return [f"{member.role} {member.name}: {directory / (member.name + '.nk')}  "
                f"{member.key}", *reload_steps(directory)]
    member = add_member(directory, "", ns.name, replace=True)
    return [f"{member.role} {member.name}: new key {member.key} in "
            f"{directory / (member.name + '.nk')}",
            *reload_steps(directory),
            f"  restart {member.name} with its new key file; consoles and workers re-read "
            f"{directory / 'trust'} when it changes"]


def next_steps(directory: Path, roles: list[str], names: list[str]) -> list[str]:
    conf, trust = directory / "nats-server.conf", directory / "trust"
    lines = ["", "next:", f"  the broker:  nats-server -c {conf} -sd /var/lib/nats"]
    for role, name in zip(roles, names, strict=True):
        if role == "worker":
            lines.append(f"  worker {name} (copy {name}.nk and trust to its host):  "
                         f"chump-tui worker --nats nats://BROKER:4222 --nats-creds {name}.nk "
                         f"--name {name} --trust-console trust")
        elif role == "console":
            lines.append(f"  console {name}:  chump-tui --execute --nats nats://BROKER:4222 "
                         f"--nats-creds {directory / (name + '.nk')} --trust-worker {trust}")
    return [*lines, "  keep every .nk file private (mode 0600): it is that member's identity"]


def reload_steps(directory: Path) -> list[str]:
    return [f"  {directory / 'nats-server.conf'} rewritten: nats-server --signal reload "
            "(or restart it) to apply"]
