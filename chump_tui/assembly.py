"""Assembling the engine from options: the session, the spawner, GitHub, the reflections.

Plain mode and the console both build their engine here, so neither imports the other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chump_tui.backlog import Backlog
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.engine import Engine
    from chump_tui.fleet.remote import FleetClient
    from chump_tui.notify import Notifier, NotifySettings
    from chump_tui.options import Options
    from chump_tui.reflections import ReflectionWriter
    from chump_tui.session_store import SessionStore
    from chump_tui.spawners import Spawner


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_writer(opts: Options, repo_root: Path) -> ReflectionWriter:
    from chump_tui.reflections import NoopReflectionWriter, SqliteReflectionWriter

    if opts.no_reflect:
        return NoopReflectionWriter()
    return SqliteReflectionWriter.for_repo(repo_root)


def open_session(repo_root: Path) -> tuple[SessionStore, list[Dispatch], list[str]]:
    """Lock the repo's session and load what must be resumed; a finished one is archived."""
    from chump_tui.safe_fs import tracked_by_git
    from chump_tui.session_store import SessionStore, needs_resume

    store = SessionStore.for_repo(repo_root)
    store.acquire()
    records, notes = store.load()
    if tracked_by_git(repo_root, "sessions"):
        notes.append("sessions/ is tracked by git: its files came with the repository; "
                     "chump-tui checks them but they are not its own (add sessions/ to "
                     ".gitignore)")
    if records and not needs_resume(records):
        store.archive()
        records = []
    return store, records, notes


def gap_harnesses(backlog: Backlog) -> dict[str, str]:
    """Gaps that pick their own agent CLI (``harness: codex``)."""
    return {g.id: str(g.extra["harness"]).strip().lower() for g in backlog.gaps
            if isinstance(g.extra.get("harness"), str) and g.extra["harness"].strip()}


def check_harnesses(opts: Options, repo_root: Path, backlog: Backlog) -> None:
    """Every agent CLI this run may start is there: else one line naming its variable,
    before anything is dispatched (ChumpError)."""
    from chump_tui.errors import ChumpError
    from chump_tui.harness import missing_bin, resolve_harness
    from chump_tui.spawners import active_fault_mode, resolve_backend

    if opts.nats:
        return  # the agents run on the fleet's hosts: each worker checks its own
    if active_fault_mode(os.environ) is not None or resolve_backend(os.environ)[0] != "claude":
        return  # fault children and chump-local are no harness
    wanted = {opts.harness} | {name for gid, name in gap_harnesses(backlog).items()
                               if any(g.id == gid and g.status == "open" for g in backlog.gaps)}
    for name in sorted(wanted):
        try:
            harness = resolve_harness(name)
        except ValueError as exc:
            raise ChumpError(f"{backlog.path}: {exc}") from None
        problem = missing_bin(harness, repo_root, os.environ)
        if problem:
            raise ChumpError(problem)


def build_engine(opts: Options, repo_root: Path, backlog: Backlog,
                 store: SessionStore | None,
                 warn: Callable[[str], None] = _stderr) -> Engine:
    from chump_tui.engine import Engine, EngineConfig, default_log_dir
    from chump_tui.pr_providers import GhPrProvider
    from chump_tui.spawners import RealSpawner

    fleet = None
    spawner: Spawner
    if opts.nats:
        fleet, spawner = open_fleet(opts, repo_root, backlog, warn)
    else:
        spawner = RealSpawner(repo_root, os.environ, opts.harness, gap_harnesses(backlog))
        if spawner.backend_warning:
            warn(f"[dispatch] WARN {spawner.backend_warning}")
    engine = Engine(
        repo_root, spawner, GhPrProvider(repo_root), make_writer(opts, repo_root),
        EngineConfig(base_ref=opts.base_ref, max_parallel=opts.max_parallel, tick_s=opts.tick_s,
                     kill_grace_s=opts.kill_grace_s, soft_deadline_s=opts.soft_deadline_s,
                     log_dir=default_log_dir(repo_root), environ=os.environ,
                     continuous=opts.continuous, include_shipped=opts.include_shipped,
                     fix_ci=opts.fix_ci, budget_usd=opts.budget_usd,
                     budget_tokens=opts.budget_tokens, fleet_budget_usd=opts.fleet_budget_usd,
                     budget_action=opts.budget_action,
                     first_output_timeout_s=opts.first_output_timeout_s,
                     idle_timeout_s=opts.idle_timeout_s),
        backlog=backlog.gaps,
        store=store,
    )
    if fleet is not None:
        engine.subscribe(fleet.on_engine_event)
        engine.on_close.append(fleet.close)
    return engine


def open_fleet(opts: Options, repo_root: Path, backlog: Backlog,
               warn: Callable[[str], None] = _stderr) -> tuple[FleetClient, Spawner]:
    """The fleet's client and spawner (``--nats``): FleetError (one line) when the server
    cannot be reached or admits clients without credentials (without --insecure-broker).
    The replay of a resumed session starts at ``follow_fleet``."""
    import socket

    from chump_tui.fleet.broker import Broker
    from chump_tui.fleet.identity import TrustList
    from chump_tui.fleet.remote import FleetClient
    from chump_tui.fleet.remote_spawner import RemoteSpawner
    from chump_tui.fleet.roster import inbox_prefix
    from chump_tui.fleet.security import broker_check, fleet_identity
    from chump_tui.fleet.worker import origin_url
    from chump_tui.fleet.worker_keys import WorkerKeys

    assert opts.nats
    origin = origin_url(repo_root)
    session_dir = repo_root / "sessions" / "chump-tui"
    identity = fleet_identity(opts.nats_creds, session_dir / "fleet-key.nk")
    trust = TrustList().add(opts.trust_worker, "worker").add(
        [os.environ.get("CHUMP_FLEET_TRUST", "")])
    broker = Broker.from_environ(opts.nats, opts.nats_creds,
                                 f"chump-tui console {socket.gethostname()}",
                                 identity=identity,
                                 inbox=inbox_prefix(identity.public_key),
                                 waiting=lambda line: warn(f"[fleet] {line}")).connect()
    try:
        for line in broker_check(broker, opts.insecure_broker):
            warn(f"[fleet] {line}")
    except Exception:
        broker.close()
        raise
    warn(f"[fleet] this console signs with {identity.public_key}; workers run its requests "
         "only if they trust that key")
    keys = WorkerKeys(trust, session_dir / "fleet-pins.json")
    client = FleetClient(broker, origin, f"chump-tui:{socket.gethostname()}:{os.getpid()}",
                         keys=keys)
    return client, RemoteSpawner(client, opts.base_ref, opts.harness, gap_harnesses(backlog),
                                 opts.dispatch_deadline_s, opts.fleet_output)


def notify_settings(opts: Options) -> NotifySettings | None:
    """What to tell the operator and where (None: nothing). A webhook or a command without
    --notify tells every event."""
    from chump_tui.notify import DEFAULT_EVENTS, NotifySettings

    events = opts.notify or (DEFAULT_EVENTS if (opts.notify_url or opts.notify_cmd) else ())
    if not events:
        return None
    return NotifySettings(tuple(events), opts.notify_url or "", list(opts.notify_cmd or []))


def start_notifier(settings: NotifySettings, engine: Engine,
                   terminal_write: Callable[[str], None] | None) -> Notifier:
    """A notifier listening to ``engine``, closed (its last notifications sent) with it."""
    from chump_tui.notify import Notifier, sinks_for

    notifier = Notifier(settings.events, sinks_for(settings, terminal_write),
                        all_over=engine.all_over)
    engine.subscribe(notifier)
    engine.on_close.append(notifier.close)
    return notifier


def fleet_report(engine: Engine) -> str | None:
    """What the fleet dropped (unsigned, forged, malformed), for the end of a run."""
    from chump_tui.fleet.remote_spawner import RemoteSpawner

    if not isinstance(engine.spawner, RemoteSpawner) or not engine.spawner.client.dropped:
        return None
    client = engine.spawner.client
    return (f"[fleet] dropped {client.dropped} message(s) not signed by the worker they "
            f"name, malformed or foreign (last: {client.last_drop})")


def follow_fleet(engine: Engine, records: list[Dispatch]) -> None:
    """Start reading the fleet's reports, from the oldest agent a resumed session had."""
    from chump_tui.fleet.remote_spawner import RemoteSpawner, replay_from

    if isinstance(engine.spawner, RemoteSpawner):
        spawner = engine.spawner
        spawner.client.on_return = lambda agent: spawner.adopt_returned(engine, agent)
        spawner.on_request = engine.note_request
        spawner.on_waiting = engine.note_waiting
        settled = [r for r in records if r.remote.partition("/")[2] and not r.active]
        spawner.own_requests.update(r.remote.partition("/")[2] for r in settled)
        # Settled before it stopped: a failed attempt's claim is done (a shipped one's is
        # kept until its TTL, as when it shipped).
        spawner.client.release_claims([
            (r.gap_id, r.remote.partition("/")[2]) for r in settled
            if r.outcome is None or r.outcome.kind != "shipped"])
        spawner.client.follow(replay_from(records))
