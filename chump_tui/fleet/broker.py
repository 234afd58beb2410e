"""The connection to the NATS server, for callers that are threads, not coroutines.

nats-py is asyncio; the engine, the worker and the console's thread workers are plain
threads. A Broker runs one event loop on a thread of its own and offers blocking calls
with timeouts. It creates the streams and buckets it needs when they are missing and
uses them as they are when upstream tools made them first. Credentials (``--nats-creds``,
a token or user in the URL) are never printed: every message names the server by
``safe_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from chump_tui import numbers
from chump_tui.errors import ChumpError
from chump_tui.fleet import wire
from chump_tui.fleet.identity import Identity

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 10.0
EVENT_TRIES = 8  # 0.5 s doubling to 15 s: about a minute of broker trouble
PING_INTERVAL_S = 5.0
MAX_OUTSTANDING_PINGS = 2
"""A link that drops without a reset is noticed in about 10-15 s (nats-py's default is
two minutes twice), and the client fails over to another server of the cluster."""
STARTUP_WAIT_S = 30.0
"""How long a start waits for a broker that is not there yet, or whose JetStream is still
electing its leader (a fresh cluster): retried with back-off, saying so
(CHUMP_NATS_STARTUP_WAIT, seconds; 0: no wait)."""


@dataclass(frozen=True)
class StreamLimits:
    """How long and how much the streams chump-tui creates keep (upstream keeps its events
    24 h). Anyone who may read a stream reads all it keeps: keep no more than is needed to
    resume a console. Set by CHUMP_NATS_OUTPUT_MAX_AGE / _MAX_BYTES and
    CHUMP_NATS_EVENTS_MAX_AGE / _MAX_BYTES (seconds, bytes)."""

    output_max_age_s: float = 86400.0
    output_max_bytes: int = 1024**3
    events_max_age_s: float = 86400.0
    events_max_bytes: int = 256 * 1024**2

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StreamLimits:
        values: dict[str, Any] = {}
        for name, field_name, parse in (
                ("CHUMP_NATS_OUTPUT_MAX_AGE", "output_max_age_s", numbers.positive_duration),
                ("CHUMP_NATS_OUTPUT_MAX_BYTES", "output_max_bytes", _bytes),
                ("CHUMP_NATS_EVENTS_MAX_AGE", "events_max_age_s", numbers.positive_duration),
                ("CHUMP_NATS_EVENTS_MAX_BYTES", "events_max_bytes", _bytes)):
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            try:
                value = parse(float(raw))
            except ValueError:
                value = None
            if value is None:
                raise FleetError(f"{name}={raw!r}: expected a positive number")
            values[field_name] = value
        return cls(**values)


def _whole(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None


def _seconds(text: str | None, default: float) -> float:
    """A whole number of seconds from the environment, 0 to an hour; else ``default``."""
    number = numbers.int_in(_whole(text or ""), 0, 3600)
    return float(number) if number is not None else default


def _bytes(value: float) -> int | None:
    number = numbers.count(value)
    return number if number else None


class FleetError(ChumpError):
    """The broker cannot be reached or refused what we asked: one line for the operator.
    ``transient``: it may answer if asked again (not there yet, electing a leader)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ClaimHeld(Exception):
    """``chump_gaps`` already holds the gap: ``claim`` is the holder's value."""

    def __init__(self, claim: wire.Claim | None) -> None:
        super().__init__(claim.session_id if claim else "unknown holder")
        self.claim = claim


def upstream_kv_config(bucket: str, history: int, max_age_s: float) -> js_api.StreamConfig:
    """The stream upstream's client (async-nats ``create_key_value``) makes for a bucket,
    field for field: the server refuses a create that differs from an existing stream in
    anything (error 10058), and upstream then falls back to file leases without a word."""
    return js_api.StreamConfig(
        name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"],
        retention=js_api.RetentionPolicy.LIMITS, max_consumers=-1, max_msgs=-1,
        max_bytes=-1, max_age=max_age_s, max_msgs_per_subject=history, max_msg_size=-1,
        storage=js_api.StorageType.FILE, discard=js_api.DiscardPolicy.NEW, num_replicas=1,
        duplicate_window=min(120.0, max_age_s), allow_rollup_hdrs=True, deny_delete=True,
        deny_purge=False, allow_direct=True, mirror_direct=False)


def credential_options(creds: Path | None) -> dict[str, Any]:
    """nats-py's options for a credentials file: a ``.creds`` file (a user JWT and its
    seed) or an nkey seed file (``chump-tui fleet init`` writes those); FleetError naming
    the file when it is neither."""
    if creds is None:
        return {}
    try:
        text = creds.read_bytes()[:65536].decode("utf-8", errors="replace")
    except OSError as exc:
        raise FleetError(f"{creds}: cannot read the NATS credentials "
                         f"({exc.strerror or exc})") from None
    if "BEGIN NATS USER JWT" in text:
        return {"user_credentials": str(creds)}
    from chump_tui.fleet.identity import SEED

    seed = SEED.search(text)
    if seed is None:
        raise FleetError(f"{creds}: neither a .creds file nor an nkey seed (SU…)")
    return {"nkeys_seed_str": seed.group(0)}


def server_urls(url: str) -> list[str]:
    """``--nats`` may list a cluster's servers, comma-separated."""
    return [u.strip() for u in url.split(",") if u.strip()]


def safe_url(url: str) -> str:
    """The URL(s) without user, password or token."""
    shown = []
    for one in server_urls(url):
        try:
            parts = urlsplit(one if "://" in one else f"nats://{one}")
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            shown.append("(malformed URL)")
            continue
        shown.append(f"{parts.scheme}://{parts.hostname or ''}{port}")
    return ",".join(shown)


class Broker:
    """One connection, one event loop thread; blocking calls from any other thread."""

    def __init__(self, url: str, creds: Path | None = None, name: str = "chump-tui",
                 replicas: int = 1, gap_bucket: str = wire.GAP_BUCKET,
                 workers_bucket: str = wire.WORKERS_BUCKET, inbox: str = "_INBOX",
                 identity: Identity | None = None, limits: StreamLimits | None = None,
                 startup_wait_s: float = STARTUP_WAIT_S,
                 waiting: Callable[[str], None] = lambda line: None) -> None:
        self.url = url
        self.startup_wait_s = startup_wait_s
        self.waiting = waiting  # told, in one line, while a start waits for the broker
        self.disconnected_at: float | None = None  # the link is down since (monotonic)
        self.where = safe_url(url)
        self.creds = creds
        self.name = name
        self.inbox = inbox  # replies come here: a fleet member's own subjects
        self.identity = identity  # signs everything we publish
        self.limits = limits or StreamLimits()
        self.replicas = replicas
        self.gap_bucket = gap_bucket
        self.workers_bucket = workers_bucket
        self.errors: list[str] = []  # the last few connection errors, for the status line
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: dict[str, KeyValue] = {}

    @classmethod
    def from_environ(cls, url: str, creds: Path | None, name: str,
                     replicas: int | None = None, identity: Identity | None = None,
                     inbox: str = "_INBOX",
                     waiting: Callable[[str], None] = lambda line: None) -> Broker:
        """Bucket names as upstream lets them be overridden (CHUMP_NATS_GAP_BUCKET, ...);
        replicas of what it creates from CHUMP_NATS_REPLICAS (3 on a cluster) unless given;
        the streams' limits from CHUMP_NATS_*_MAX_AGE / _MAX_BYTES."""
        import os

        if replicas is None:
            replicas = numbers.int_in(_whole(os.environ.get("CHUMP_NATS_REPLICAS", "")),
                                      1, 5) or 1
        return cls(url, creds, name=name, replicas=replicas,
                   gap_bucket=os.environ.get("CHUMP_NATS_GAP_BUCKET") or wire.GAP_BUCKET,
                   workers_bucket=os.environ.get("CHUMP_NATS_WORKERS_BUCKET")
                   or wire.WORKERS_BUCKET, inbox=inbox, identity=identity,
                   limits=StreamLimits.from_environ(os.environ),
                   startup_wait_s=_seconds(os.environ.get("CHUMP_NATS_STARTUP_WAIT"),
                                           STARTUP_WAIT_S),
                   waiting=waiting)

    # ------------------------------------------------------------ plumbing
    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run ``coro`` on the broker's loop and wait for it (FleetError on timeout)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except (TimeoutError, FutureTimeout):
            future.cancel()
            raise FleetError(f"{self.where}: no answer within {timeout:g}s") from None
        except NatsError as exc:  # disconnected, no responders, a refused request
            raise FleetError(f"{self.where}: {type(exc).__name__} "
                             f"{_one_line(str(exc))}".rstrip()) from None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop without waiting for it."""
        asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call_soon(self, call: Callable[[], object]) -> None:
        """Run ``call`` on the loop, after what is already queued there (in order with the
        callbacks of our subscriptions)."""
        self._loop.call_soon_threadsafe(call)

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "connect() first"
        return self._js

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "connect() first"
        return self._nc

    def connect(self) -> Broker:
        """Connect and make sure the streams and buckets exist; FleetError in one line."""
        self._thread.start()

        async def on_error(exc: Exception) -> None:
            self.errors = [*self.errors[-4:], f"{type(exc).__name__}: {exc}"]

        async def on_disconnect() -> None:
            self.disconnected_at = self.disconnected_at or time.monotonic()

        async def on_reconnect() -> None:
            self.disconnected_at = None

        options: dict[str, Any] = {
            "name": self.name, "connect_timeout": 2, "error_cb": on_error,
            "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
            "inbox_prefix": self.inbox, "ping_interval": PING_INTERVAL_S,
            "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
            "disconnected_cb": on_disconnect, "reconnected_cb": on_reconnect,
        }
        options.update(credential_options(self.creds))

        async def go() -> Client:
            # nats-py keeps retrying an unreachable server on its own: bound the first try.
            first = dict(options, max_reconnect_attempts=1, allow_reconnect=False)
            client = await asyncio.wait_for(nats.connect(server_urls(self.url), **first),
                                            CONNECT_TIMEOUT_S)
            # Reconnect for ever once it has worked (a broker restart, a failover).
            client.options["allow_reconnect"] = True
            client.options["max_reconnect_attempts"] = -1
            return client

        deadline = time.monotonic() + self.startup_wait_s
        delay = 0.5
        while True:
            try:
                self._nc = self._connect_once(go)
                self._js = self.nc.jetstream()
                self._ensure_or_fail()
                return self
            except FleetError as exc:
                if not exc.transient or time.monotonic() + delay > deadline:
                    raise
                self.waiting(f"{exc}; trying again in {delay:g}s (for up to "
                             f"{self.startup_wait_s:g}s)")
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        self.run(self._nc.close(), 5)
                    self._nc = None
                time.sleep(delay)  # nothing else to do until the broker is there
                delay = min(delay * 2, 8.0)

    def _connect_once(self, go: Callable[[], Coroutine[Any, Any, Client]]) -> Client:
        future = asyncio.run_coroutine_threadsafe(go(), self._loop)
        try:
            return future.result(CONNECT_TIMEOUT_S + 1)
        except (TimeoutError, FutureTimeout):
            future.cancel()
            raise FleetError(f"{self.where}: no NATS server answered within "
                             f"{CONNECT_TIMEOUT_S:g}s", transient=True) from None
        except (NatsError, OSError) as exc:
            if _refused(exc):
                who = f"the credentials in {self.creds}" if self.creds else \
                    "a client without credentials (give --nats-creds)"
                raise FleetError(f"{self.where}: the server refused {who} "
                                 "(Authorization Violation)") from None
            detail = self.errors[-1] if self.errors else f"{type(exc).__name__}: {exc}"
            # A certificate nobody trusts stays untrusted: only a missing broker may come.
            untrusted = isinstance(exc, ssl.SSLError) or "certificate" in detail.lower() \
                or "ssl" in detail.lower()
            raise FleetError(f"{self.where}: cannot connect to NATS ({_one_line(detail)})",
                             transient=not untrusted) from None

    def _ensure_or_fail(self) -> None:
        try:
            self.run(self._ensure())
        except nats.js.errors.ServiceUnavailableError as exc:  # a cluster electing
            raise FleetError(f"{self.where}: JetStream is not ready yet "
                             f"({_one_line(str(exc))})", transient=True) from None
        except (TimeoutError, FutureTimeout, nats.errors.TimeoutError):
            raise FleetError(f"{self.where}: JetStream did not answer", transient=True) \
                from None
        except NatsError as exc:
            raise FleetError(f"{self.where}: JetStream is not usable ({_one_line(str(exc))}); "
                             "start nats-server with -js") from None

    def trouble(self) -> str | None:
        """The link's state when it is not up: ``reconnecting to … 12s``."""
        since = self.disconnected_at
        if since is None:
            return None
        return f"broker: reconnecting to {self.where} {int(time.monotonic() - since)}s"

    def anonymous_admitted(self) -> str | None:
        """Whether the server lets a client without credentials in: None when it refuses
        one (what a fleet needs), else what happened, for the one line saying why we stop."""
        urls = [safe_url(u) for u in server_urls(self.url)]  # no user, password or token

        async def quiet(exc: Exception) -> None:
            return None

        async def probe() -> None:
            client = await asyncio.wait_for(
                nats.connect(urls, connect_timeout=2, allow_reconnect=False,
                             max_reconnect_attempts=1, error_cb=quiet), CONNECT_TIMEOUT_S)
            await client.close()

        future = asyncio.run_coroutine_threadsafe(probe(), self._loop)
        try:
            future.result(CONNECT_TIMEOUT_S + 1)
        except (NatsError, OSError) as exc:
            if _refused(exc):
                return None
            return f"could not tell ({_one_line(f'{type(exc).__name__}: {exc}')})"
        except (TimeoutError, FutureTimeout):
            future.cancel()
            return "could not tell (a client without credentials got no answer)"
        return "it lets a client without credentials connect"

    async def _ensure(self) -> None:
        file = js_api.StorageType.FILE
        limits = self.limits
        streams = (
            (wire.DISPATCH_STREAM, ["chump.fleet.dispatch.>"],
             js_api.RetentionPolicy.WORK_QUEUE, wire.MAX_REQUEST_LIFETIME_S, None),
            (wire.AGENTS_STREAM, ["chump.fleet.agent.>"], js_api.RetentionPolicy.LIMITS,
             limits.output_max_age_s, limits.output_max_bytes),
            (wire.EVENTS_STREAM, [wire.EVENTS_SUBJECTS], js_api.RetentionPolicy.LIMITS,
             limits.events_max_age_s, limits.events_max_bytes),
        )
        for name, subjects, retention, max_age, max_bytes in streams:
            try:
                await self.js.stream_info(name)
            except NotFoundError:
                await self.js.add_stream(js_api.StreamConfig(
                    name=name, subjects=subjects, retention=retention, storage=file,
                    num_replicas=self.replicas, max_age=max_age, max_bytes=max_bytes))
        # Upstream's buckets with upstream's configuration, whoever makes them first: a
        # bucket that differs in anything makes the other side's create fail (10058).
        for bucket, history, max_age in (
                (self.gap_bucket, wire.GAP_HISTORY, wire.CLAIM_TTL_S),
                (self.workers_bucket, wire.WORKERS_HISTORY, wire.WORKERS_MAX_AGE_S)):
            try:
                self._kv[bucket] = await self.js.key_value(bucket)
            except NotFoundError:
                await self.js.add_stream(upstream_kv_config(bucket, history, max_age))
                self._kv[bucket] = await self.js.key_value(bucket)
        try:
            self._kv[wire.REQUESTS_BUCKET] = await self.js.key_value(wire.REQUESTS_BUCKET)
        except NotFoundError:  # ours alone
            self._kv[wire.REQUESTS_BUCKET] = await self.js.create_key_value(
                js_api.KeyValueConfig(bucket=wire.REQUESTS_BUCKET,
                                      ttl=wire.MAX_REQUEST_LIFETIME_S, history=1,
                                      storage=file, replicas=self.replicas))

    def close(self) -> None:
        """Flush what is pending, close, and end the loop with nothing left running on it."""
        if self._nc is not None:
            nc = self._nc

            async def flush_and_close() -> None:
                # Not drain(): it waits on every subscription's queue, a pull consumer's
                # for its whole fetch. What we published with an ack is stored already;
                # flush() sends what went out without one (upstream events).
                with contextlib.suppress(Exception):
                    await nc.flush(2)
                await nc.close()

            with contextlib.suppress(Exception):
                self.run(flush_and_close(), 5)

        async def finish() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.run(finish(), 5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # ------------------------------------------------------------ operations
    def headers(self, subject: str, data: bytes) -> dict[str, str] | None:
        """The signature headers of a message we send (None without an identity)."""
        if self.identity is None:
            return None
        return wire.signed_headers(self.identity, subject, data)

    def jetstream_answers(self) -> None:
        """FleetError unless JetStream answers this client now (its account's info)."""
        async def go() -> None:
            await self.js.account_info()

        self.run(go(), timeout=5)

    def publish(self, subject: str, data: bytes) -> None:
        """Into a stream, signed; returns once the server stored it."""
        self.run(self.js.publish(subject, data, headers=self.headers(subject, data)))

    def publish_event(self, subject: str, data: bytes, wait: bool = False) -> None:
        """An upstream coordination event, stored with an acknowledgement and retried with
        back-off through a broker hiccup (about a minute); never blocks the caller unless
        ``wait`` (then it returns once the event is stored or given up). Signed
        in headers (upstream reads the body as it is): other consoles believe a DONE only
        from a console they trust."""
        headers = self.headers(subject, data)

        async def go() -> None:
            delay = 0.5
            for _ in range(EVENT_TRIES):
                try:
                    await self.js.publish(subject, data, timeout=5, headers=headers)
                    return
                except (NatsError, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
            self.errors = [*self.errors[-4:], f"an event on {subject} was not stored"]

        if wait:  # on the caller's thread: until stored, or given up
            with contextlib.suppress(FleetError):
                self.run(go(), timeout=120)
            return
        self.spawn(go())

    def publish_many(self, messages: list[tuple[str, bytes]]) -> list[bool]:
        """Into streams, signed, all at once (one round trip, not one per message); for
        each, whether the server stored it."""
        async def go() -> list[bool]:
            done = await asyncio.gather(
                *(self.js.publish(s, d, headers=self.headers(s, d)) for s, d in messages),
                return_exceptions=True)
            return [not isinstance(r, BaseException) for r in done]

        return self.run(go())

    def request(self, subject: str, data: bytes, timeout: float) -> Msg:
        """A core request, signed; the answer (its signature is the caller's to check)."""
        async def go() -> Msg:
            return await self.nc.request(subject, data, timeout=timeout,
                                         headers=self.headers(subject, data))
        return self.run(go(), timeout + 1)

    async def respond(self, msg: Msg, data: bytes) -> None:
        """Answer a core request, signed (on the broker's loop)."""
        if msg.reply:
            await self.nc.publish(msg.reply, data, headers=self.headers(msg.reply, data))

    def claim(self, gap_id: str, claim: wire.Claim) -> None:
        """Upstream's atomic claim: KV create; ClaimHeld naming the winner otherwise."""
        kv = self._kv[self.gap_bucket]

        async def go() -> bool:
            try:
                await kv.create(wire.gap_key(gap_id), claim.to_bytes())
            except KeyWrongLastSequenceError:
                return False
            return True

        if not self.run(go()):
            raise ClaimHeld(self.claim_of(gap_id))

    def take_request(self, uid: str, worker: str) -> bool:
        """Mark request ``uid`` taken, fleet-wide and atomically (KV create); False when
        some worker took it before: a request is obeyed once, a replay never."""
        kv = self._kv[wire.REQUESTS_BUCKET]

        async def go() -> bool:
            try:
                await kv.create(uid, worker.encode())
            except KeyWrongLastSequenceError:
                return False
            return True

        return self.run(go())

    def claim_of(self, gap_id: str) -> wire.Claim | None:
        data = self.kv_get(self.gap_bucket, wire.gap_key(gap_id))
        if data is None:
            return None
        try:
            return wire.Claim.from_bytes(data)
        except wire.WireError:
            return wire.Claim(session_id="(unreadable claim)", claimed_at="")

    def claims(self) -> dict[str, wire.Claim]:
        """Every live claim, by gap id."""
        out: dict[str, wire.Claim] = {}
        for key, data in self.kv_items(self.gap_bucket).items():
            if key.startswith("gap."):
                try:
                    out[key[4:]] = wire.Claim.from_bytes(data)
                except wire.WireError:
                    out[key[4:]] = wire.Claim(session_id="(unreadable claim)", claimed_at="")
        return out

    def release(self, gap_id: str, session_id: str) -> bool:
        """Delete the claim only when it is still ``session_id``'s."""
        held = self.claim_of(gap_id)
        if held is None or held.session_id != session_id:
            return False
        kv = self._kv[self.gap_bucket]
        self.run(kv.purge(wire.gap_key(gap_id)))  # as upstream releases: no history kept
        return True

    def release_by_session(self, session_id: str) -> list[str]:
        """Release every claim ``session_id`` holds (its host went silent); their gap ids."""
        freed = [gap_id for gap_id, claim in self.claims().items()
                 if claim.session_id == session_id and self.release(gap_id, session_id)]
        return freed

    def kv_get(self, bucket: str, key: str) -> bytes | None:
        kv = self._kv[bucket]

        async def go() -> bytes | None:
            try:
                entry = await kv.get(key)
            except (NotFoundError, nats.js.errors.KeyDeletedError):
                return None
            return bytes(entry.value) if entry.value else None

        return self.run(go())

    def kv_put(self, bucket: str, key: str, value: bytes) -> None:
        self.run(self._kv[bucket].put(key, value))

    def kv_delete(self, bucket: str, key: str) -> None:
        self.run(self._kv[bucket].delete(key))

    def kv_items(self, bucket: str) -> dict[str, bytes]:
        kv = self._kv[bucket]

        async def go() -> dict[str, bytes]:
            try:
                keys = await kv.keys()
            except nats.js.errors.NoKeysError:
                return {}
            out = {}
            for key in keys:
                with contextlib.suppress(NotFoundError, nats.js.errors.KeyDeletedError):
                    entry = await kv.get(key)
                    if entry.value:
                        out[key] = bytes(entry.value)
            return out

        return self.run(go())

    def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]]) -> None:
        """Core NATS (kill requests): ``handler`` runs on the broker's loop."""
        self.run(self.nc.subscribe(subject, cb=handler))

    def follow_stream(self, subject: str, stream: str,
                      handler: Callable[[str, bytes, dict[str, str] | None], None],
                      start_time: float | None) -> None:
        """Every message of ``stream`` on ``subject`` from ``start_time`` (None: new ones), in
        order, through an ordered consumer (it recreates itself after a reconnect);
        ``handler(subject, payload, headers)``."""
        async def on_msg(msg: Msg) -> None:
            handler(msg.subject, bytes(msg.data), msg.headers)

        policy = (js_api.DeliverPolicy.NEW if start_time is None
                  else js_api.DeliverPolicy.BY_START_TIME)
        config = js_api.ConsumerConfig(deliver_policy=policy)
        if start_time is not None:
            config.opt_start_time = datetime.fromtimestamp(start_time, UTC)

        async def go() -> None:
            await self.js.subscribe(subject, stream=stream, cb=on_msg, ordered_consumer=True,
                                    config=config)

        self.run(go())

    def work_queue(self, key: str) -> WorkQueue:
        return WorkQueue(self, key)


class WorkQueue:
    """The dispatch requests for one repository: a durable pull consumer all its workers
    share, so each request reaches one worker; unacked, it is redelivered."""

    ACK_WAIT_S = 60.0

    def __init__(self, broker: Broker, key: str) -> None:
        self.broker = broker

        async def go() -> JetStreamContext.PullSubscription:
            return await broker.js.pull_subscribe(
                wire.dispatch_subject(key), durable=f"chump-workers-{key}",
                stream=wire.DISPATCH_STREAM,
                config=js_api.ConsumerConfig(ack_wait=self.ACK_WAIT_S, max_deliver=-1))

        self._sub = broker.run(go())

    def fetch(self, timeout: float) -> Msg | None:
        async def go() -> Msg | None:
            try:
                msgs = await self._sub.fetch(1, timeout=timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                return None
            return msgs[0] if msgs else None

        return self.broker.run(go(), timeout + CALL_TIMEOUT_S)

    def ack(self, msg: Msg) -> None:
        self.broker.run(msg.ack())

    def in_progress(self, msg: Msg) -> None:
        self.broker.run(msg.in_progress())

    def nak(self, msg: Msg, delay: float = 1.0) -> None:
        self.broker.run(msg.nak(delay=delay))


def _refused(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
