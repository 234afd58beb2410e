"""``chump-tui fleet init | add | rotate``: the fleet's identities and its broker's rules.

A fleet directory holds one identity per console, worker and upstream agent (an nkey seed,
``<name>.nk``, 0600: copy each to its host), the roster of public keys (``fleet.json``),
the trust file every console and worker reads (``trust``: whose requests a worker obeys,
whose reports a console believes) and a nats-server configuration (``nats-server.conf``)
that admits those identities only, each with the subjects its role needs:

- a console publishes dispatch and kill requests and upstream events, reads the agents'
  stream and the buckets, fences the requests it gave up on; it never publishes a
  worker's report;
- a worker takes requests from the queue, publishes reports under its own name only,
  holds claims, writes its own presence record and answers kills sent to it; it never
  publishes a dispatch or a kill;
- an upstream agent (``chump-coord``) claims gaps and sends events, as upstream does;
- anyone else cannot connect at all.

The broker's rules are one wall; every request and report is also signed and checked
(``chump_tui.fleet.identity``), so a broker someone else configured loosely is not a hole.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from chump_tui.errors import ChumpError
from chump_tui.fleet import wire
from chump_tui.fleet.identity import ROLES, from_seed, new_seed, write_seed
from chump_tui.safe_fs import open_nofollow, real_dir

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ROSTER = "fleet.json"
TRUST = "trust"
SERVER_CONF = "nats-server.conf"


@dataclass(frozen=True)
class Member:
    role: str  # console | worker | agent
    name: str
    key: str  # its public key (U…)


def inbox_prefix(public_key: str) -> str:
    """Replies to a member's requests come to its own inbox subjects, named by its key,
    which only it may read (the default ``_INBOX.>`` would let every client read every
    answer)."""
    return f"_INBOX_{public_key}"


def load_roster(directory: Path) -> list[Member]:
    path = directory / ROSTER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        members = [Member(str(m["role"]), str(m["name"]), str(m["key"]))
                   for m in data["members"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChumpError(f"{path}: not a fleet roster ({exc})") from None
    return members


def add_member(directory: Path, role: str, name: str, replace: bool = False) -> Member:
    """A new identity (its seed in ``<name>.nk``); ``replace``: rotate an existing one."""
    if not NAME.match(name):
        raise ChumpError(f"name {name!r}: use letters, digits, '-' and '_' (at most 64)")
    members = load_roster(directory)
    existing = next((m for m in members if m.name == name), None)
    if not replace and role not in ROLES:
        raise ChumpError(f"role {role!r}: choose {', '.join(ROLES)}")
    if existing is not None and not replace:
        raise ChumpError(f"{directory / ROSTER}: {name} is already a {existing.role} "
                         f"(chump-tui fleet rotate {name} gives it a new key)")
    if existing is None and replace:
        raise ChumpError(f"{directory / ROSTER}: no member named {name}")
    if existing is not None:
        role = existing.role
    seed = new_seed()
    write_seed(directory / f"{name}.nk", seed)
    member = Member(role, name, from_seed(seed).public_key)
    members = [m for m in members if m.name != name] + [member]
    write_fleet(directory, members)
    return member


def write_fleet(directory: Path, members: list[Member]) -> None:
    """The roster, the trust file and the server configuration, from the members."""
    _write(directory / ROSTER, json.dumps({"members": [asdict(m) for m in members]},
                                          indent=2) + "\n")
    lines = ["# chump-tui fleet trust file: the keys a worker obeys (console) and a console",
             "# believes (worker). Written by chump-tui fleet init/add/rotate.", ""]
    lines += [f"{m.role} {m.name} {m.key}" for m in members if m.role in ("console", "worker")]
    _write(directory / TRUST, "\n".join(lines) + "\n")
    _write(directory / SERVER_CONF, server_config(members))


def fleet_dir(directory: Path) -> Path:
    """An existing fleet directory (ChumpError when there is none)."""
    if not (directory / ROSTER).is_file():
        raise ChumpError(f"{directory}: no fleet here (chump-tui fleet init --dir {directory})")
    real_dir(directory)
    return directory


def init_fleet(directory: Path, consoles: list[str], workers: list[str],
               agents: list[str]) -> list[Member]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    real_dir(directory)
    if load_roster(directory):
        raise ChumpError(f"{directory}: a fleet is already there (chump-tui fleet add or "
                         "rotate change it)")
    names = consoles + workers + agents
    if len(set(names)) != len(names):
        raise ChumpError("every member needs a name of its own")
    for role, group in (("console", consoles), ("worker", workers), ("agent", agents)):
        for name in group:
            add_member(directory, role, name)
    return load_roster(directory)


# ------------------------------------------------------------------ the broker's rules
def _js_api(stream: str, *actions: str) -> list[str]:
    return [f"$JS.API.{action}.{stream}" for action in actions]


def _consume(stream: str) -> list[str]:
    """What reading a stream through a consumer of one's own takes (ordered consumers,
    a KV bucket's key listing)."""
    return [f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.>", f"$JS.API.CONSUMER.DELETE.{stream}.>"]


def role_permissions(role: str, name: str, key: str, gap_bucket: str = wire.GAP_BUCKET,
                     workers_bucket: str = wire.WORKERS_BUCKET) -> dict[str, object]:
    """The subjects a member may publish and subscribe to: exactly what its role does."""
    gaps, workers = f"KV_{gap_bucket}", f"KV_{workers_bucket}"
    requests = f"KV_{wire.REQUESTS_BUCKET}"
    streams = [wire.DISPATCH_STREAM, wire.AGENTS_STREAM, wire.EVENTS_STREAM, gaps, workers,
               requests]
    # Every member may look up and create our streams and buckets (whoever starts first
    # makes them) and read the buckets; nothing else of JetStream.
    publish = ["$JS.API.INFO"]
    for stream in streams:
        publish += _js_api(stream, "STREAM.INFO", "STREAM.CREATE")
    for bucket in (gaps, workers, requests):
        publish += [f"$JS.API.DIRECT.GET.{bucket}", f"$JS.API.DIRECT.GET.{bucket}.>",
                    f"$JS.API.STREAM.MSG.GET.{bucket}", *_consume(bucket)]
    publish += ["$JS.FC.>", f"$KV.{gap_bucket}.>"]  # flow control; claims (and releases)
    subscribe = [f"{inbox_prefix(key)}.>"]
    permissions: dict[str, object] = {}
    if role == "console":
        publish += ["chump.fleet.dispatch.*", "chump.fleet.kill.*", "chump.fleet.watch.*",
                    "chump.events.*",
                    # a request nobody took in time is marked taken in its console's name,
                    # so no worker starts it late
                    f"$KV.{wire.REQUESTS_BUCKET}.>"]
        publish += _consume(wire.AGENTS_STREAM) + _consume(wire.EVENTS_STREAM)
        subscribe += ["chump.events.>"]
    elif role == "worker":
        dispatch = wire.DISPATCH_STREAM
        publish += [f"chump.fleet.agent.*.{name}", "chump.events.*",
                    f"$KV.{workers_bucket}.{name}", f"$KV.{wire.REQUESTS_BUCKET}.>",
                    f"$JS.API.CONSUMER.CREATE.{dispatch}.>",
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{dispatch}.>",
                    f"$JS.API.CONSUMER.INFO.{dispatch}.>",
                    f"$JS.API.CONSUMER.MSG.NEXT.{dispatch}.>", f"$JS.ACK.{dispatch}.>"]
        subscribe += [wire.kill_subject(name), wire.watch_subject(name)]
        permissions["allow_responses"] = True  # it answers the kills and watches sent to it
    else:  # an upstream agent: claims, presence and events, with upstream's own inboxes
        publish += [f"$KV.{workers_bucket}.>", "chump.events.*"]
        subscribe += ["_INBOX.>"]
    permissions["publish"] = {"allow": publish}
    permissions["subscribe"] = {"allow": subscribe}
    return permissions


def server_config(members: list[Member]) -> str:
    lines = [
        "# nats-server configuration for a chump-tui fleet, written by `chump-tui fleet`.",
        "# Start it with: nats-server -c nats-server.conf -sd /var/lib/nats [-a ADDR -p PORT]",
        "# Only the identities below may connect; each may use only its role's subjects.",
        "# Regenerated by `chump-tui fleet add` and `rotate`; reload: nats-server --signal reload",
        "jetstream: enabled",
        "authorization {",
        "  users: [",
    ]
    for m in members:
        rules = json.dumps(role_permissions(m.role, m.name, m.key))
        lines.append(f"    # {m.role} {m.name}")
        lines.append(f'    {{nkey: "{m.key}", permissions: {rules}}}')
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
