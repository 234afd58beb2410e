"""The fleet's wire format: every subject, bucket and message that crosses the broker.

Two kinds of contract live here. The upstream project's own (crate ``chump-coord``):
claims in the KV bucket ``chump_gaps`` (key ``gap.<ID>``, JSON ``session_id``,
``claimed_at``, ``files``), worker presence in ``chump_workers`` and coordination events
on the stream ``CHUMP_EVENTS`` (``chump.events.<kind, lower case>``; the payload's ``event``
keeps upstream's upper case). And ours, between a console and
its workers: dispatch requests, agent reports and kill requests, each JSON with ``v``
(WIRE_VERSION) and ``kind``. Decoding checks every field: a malformed or foreign message
is a WireError (logged and dropped by the caller), never a crash.

Every message of ours is signed by its sender's identity (``chump_tui.fleet.identity``):
two NATS headers, ``Chump-Key`` (the public key) and ``Chump-Sig`` (ed25519 over the
subject, a newline and the payload, so a message cannot be replayed on another subject).
A worker's presence record carries its key and a signature inside the JSON (a KV value
has no headers of ours). Whoever obeys a message checks the signature and whether it
trusts the key; an unsigned or wrongly signed message is dropped like a malformed one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from chump_tui import numbers
from chump_tui.fleet.identity import Identity, verify_b64

WIRE_VERSION = 2  # 2: signed (1 was unsigned, and is refused)

KEY_HEADER = "Chump-Key"
SIG_HEADER = "Chump-Sig"
MAX_REQUEST_LIFETIME_S = 24 * 3600.0
"""A request that claims to stay valid longer than this is refused: every request a worker
has seen is remembered until it expires, and that memory must stay bounded."""

GAP_BUCKET = "chump_gaps"
WORKERS_BUCKET = "chump_workers"
REQUESTS_BUCKET = "chump_fleet_requests"  # ours: each request taken once, fleet-wide
EVENTS_STREAM = "CHUMP_EVENTS"
EVENTS_SUBJECTS = "chump.events.>"
DISPATCH_STREAM = "CHUMP_FLEET_DISPATCH"
AGENTS_STREAM = "CHUMP_FLEET_AGENTS"

CLAIM_TTL_S = 4 * 3600.0  # upstream's entry TTL for gap claims
GAP_HISTORY = 5  # upstream's history for chump_gaps
WORKERS_HISTORY = 4  # ... and for chump_workers, whose entries it keeps 300 s
WORKERS_MAX_AGE_S = 300.0
MAX_MESSAGE_BYTES = 512 * 1024


class WireError(ValueError):
    """A message that is not ours, not this version, or not well formed."""


def signed_headers(identity: Identity, subject: str, payload: bytes) -> dict[str, str]:
    """The headers that prove ``identity`` sent ``payload`` on ``subject``."""
    return {KEY_HEADER: identity.public_key,
            SIG_HEADER: identity.sign_b64(subject.encode() + b"\n" + payload)}


def signer_of(subject: str, payload: bytes, headers: Mapping[str, str] | None) -> str | None:
    """The public key that signed this message, or None (unsigned, or a bad signature)."""
    if not headers:
        return None
    key, sig = headers.get(KEY_HEADER), headers.get(SIG_HEADER)
    if not isinstance(key, str) or not isinstance(sig, str):
        return None
    return key if verify_b64(key, subject.encode() + b"\n" + payload, sig) else None


def repo_key(origin: str) -> str:
    """A subject-safe name for a repository, from its origin URL (credentials dropped)."""
    return hashlib.sha256(normalize_origin(origin).encode()).hexdigest()[:16]


def normalize_origin(origin: str) -> str:
    """``https://user:tok@host/o/r.git`` and ``git@host:o/r`` name the same repo: host/o/r."""
    text = origin.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
        text = text.rsplit("@", 1)[-1] if "@" in text.split("/", 1)[0] else text
    elif "@" in text and ":" in text:
        text = text.split("@", 1)[1].replace(":", "/", 1)
    text = text.rstrip("/")
    return text[:-4] if text.endswith(".git") else text


def dispatch_subject(key: str) -> str:
    return f"chump.fleet.dispatch.{key}"


def agents_subject(key: str, worker_id: str = "*") -> str:
    return f"chump.fleet.agent.{key}.{worker_id}"


def kill_subject(worker_id: str) -> str:
    return f"chump.fleet.kill.{worker_id}"


def watch_subject(worker_id: str) -> str:
    return f"chump.fleet.watch.{worker_id}"


def event_subject(kind: str) -> str:
    """Upstream publishes and filters its events by the lower-case kind."""
    return f"chump.events.{kind.lower()}"


def gap_key(gap_id: str) -> str:
    return f"gap.{gap_id}"


def rfc3339(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC) \
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")


T = TypeVar("T")
N = TypeVar("N", int, float)


def _get(obj: Mapping[str, Any], name: str, kind: type[T], optional: bool = False) -> T:
    value = obj.get(name)
    if value is None and optional:
        return None  # type: ignore[return-value]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise WireError(f"field {name!r}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _number(obj: Mapping[str, Any], name: str, usable: Callable[[object], N | None],
            optional: bool = False) -> N:
    """A number field with a usable value (``chump_tui.numbers``), else WireError: a report
    with pid -1, an offset of 2**62 or a cost of -999 is refused, never obeyed."""
    value = obj.get(name)
    if value is None and optional:
        return None  # type: ignore[return-value]
    checked = usable(value)
    if checked is None:
        shown = repr(value)[:40] if isinstance(value, int | float) else type(value).__name__
        raise WireError(f"field {name!r}: unusable value {shown}")
    return checked


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError("not a JSON object")
    return obj


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- ours: console <-> worker
@dataclass(frozen=True)
class DispatchRequest:
    """One gap for one worker (the work queue hands each to exactly one)."""

    uid: str
    key: str  # GAP#attempt, the console's row
    gap_id: str
    origin: str  # the repository's origin URL: a worker runs only its own
    base_ref: str
    harness: str
    console: str  # the console's session id
    expires_at: float  # a worker that gets it later drops it: the console gave up
    title: str = ""
    # "full": every byte of the agent's log is sent; "summary": what the console shows
    # (state, activity, a bounded tail of new lines), the full log only while watched.
    output: str = "full"


@dataclass(frozen=True)
class AgentReport:
    """What a worker says of one agent. kind: accepted | spawned | rejected | output | exited
    (and killing | rejected, answering a kill)."""

    kind: str
    uid: str
    worker: str
    host: str
    pid: int | None = None
    start_time: float | None = None
    harness: str = ""
    backend: str = ""
    note: str = ""  # claim note (spawned), reason (rejected)
    offset: int | None = None  # output: where this chunk starts in the agent's output
    data: bytes = b""  # output
    code: int | None = None  # exited
    request_key: str = ""  # accepted, spawned, rejected: who signed the request answered
    # rejected: whose fault. "" the request's (it would fail anywhere); "claimed" the gap is
    # held by another session (``note`` says whose); "retry" the timing's or the broker's (a
    # request sent again may well run); "host" this host's (it may be degraded: another).
    refusal: str = ""
    # summary: what the agent is doing (checked_activity) and its new lines, as shown
    activity: dict[str, Any] | None = None
    lines: tuple[str, ...] = ()
    # its last summary: the lines of its whole log a reflection keeps (errors, warnings),
    # as the host saw them (the console saw only the lines summaries carried)
    signals: tuple[str, ...] = ()


REPORT_KINDS = ("accepted", "spawned", "rejected", "output", "exited", "summary")
OUTPUT_MODES = ("full", "summary")


@dataclass(frozen=True)
class WatchRequest:
    """A console asks for an agent's whole output while ``until`` (0: no more)."""

    uid: str
    until: float
    expires_at: float = 0.0  # a request replayed later is refused


WATCH_ANSWERS = ("watching", "rejected")

# What a summary may say of an agent's activity, each checked as it is read: counts, a
# cost, ages in seconds (the host's clock never reaches the console's) and short texts.
_SUMMARY_TEXTS = {"session_id": 200, "model": 100, "doing": 300, "fatal_error": 500,
                  "last_retry": 300, "finished_text": 500, "finished_subtype": 60}
_SUMMARY_COUNTS = ("turns", "tokens_in", "tokens_out", "tool_calls", "tool_errors", "events",
                   "retries", "finished_turns", "finished_tokens_in", "finished_tokens_out")
_SUMMARY_AGES = ("first_event_ago", "last_event_ago", "fatal_ago")
_SUMMARY_COSTS = ("cost_usd", "finished_cost_usd")
SUMMARY_LINES = 40  # new lines a summary carries at most (the rest: a note of how many)
SUMMARY_SIGNALS = 64  # signal lines a last summary carries (the console keeps as many)
SUMMARY_LINE_CHARS = 400


def checked_activity(obj: object) -> dict[str, Any]:
    """A summary's activity with only known fields, each of a usable value (WireError)."""
    if not isinstance(obj, dict):
        raise WireError("field 'activity': expected an object")
    out: dict[str, Any] = {}
    for name, limit in _SUMMARY_TEXTS.items():
        value = obj.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise WireError(f"activity {name!r}: expected a string")
            out[name] = value[:limit]
    for name in _SUMMARY_COUNTS:
        if obj.get(name) is not None:
            out[name] = _number(obj, name, numbers.count)
    for name in _SUMMARY_AGES:
        if obj.get(name) is not None:
            out[name] = _number(obj, name, numbers.duration)
    for name in _SUMMARY_COSTS:
        if obj.get(name) is not None:
            out[name] = _number(obj, name, numbers.cost)
    if "finished_ok" in obj:
        if not isinstance(obj["finished_ok"], bool):
            raise WireError("activity 'finished_ok': expected true or false")
        out["finished_ok"] = obj["finished_ok"]
    return out


@dataclass(frozen=True)
class KillRequest:
    uid: str
    grace_s: float
    expires_at: float = 0.0  # a kill replayed later is refused


KILL_ANSWERS = ("killing", "rejected")
NO_SUCH_AGENT = "no such agent here"  # a kill's refusal: nothing of that uid runs there


_REQUIRED_REPORT_FIELDS = ("kind", "uid", "worker", "host")


def _report_body(report: AgentReport) -> dict[str, Any]:
    """A report as JSON, its empty fields left out (a thousand agents' summaries a second:
    nulls and empty strings were a tenth of each)."""
    body = {**asdict(report), "data": base64.b64encode(report.data).decode("ascii")}
    return {name: value for name, value in body.items()
            if name in _REQUIRED_REPORT_FIELDS or value not in (None, "", (), [])}


def encode(message: DispatchRequest | AgentReport | KillRequest | WatchRequest) -> bytes:
    if isinstance(message, AgentReport):
        body = _report_body(message)
        kind = message.kind
    else:
        body = asdict(message)
        kind = ("dispatch" if isinstance(message, DispatchRequest) else
                "kill" if isinstance(message, KillRequest) else "watch")
    return _dump({"v": WIRE_VERSION, **body, "kind": kind})


def decode(data: bytes) -> DispatchRequest | AgentReport | KillRequest | WatchRequest:
    obj = _load(data)
    version = obj.get("v")
    if version != WIRE_VERSION:
        raise WireError(f"wire version {version!r} (this chump-tui speaks {WIRE_VERSION})")
    kind = _get(obj, "kind", str)
    if kind == "dispatch":
        return DispatchRequest(
            uid=_get(obj, "uid", str), key=_get(obj, "key", str),
            gap_id=_get(obj, "gap_id", str), origin=_get(obj, "origin", str),
            base_ref=_get(obj, "base_ref", str), harness=_get(obj, "harness", str),
            console=_get(obj, "console", str),
            expires_at=_number(obj, "expires_at", numbers.timestamp),
            title=_get(obj, "title", str, optional=True) or "",
            output=_output_mode(_get(obj, "output", str, optional=True) or "full"))
    if kind == "kill":
        return KillRequest(uid=_get(obj, "uid", str),
                           grace_s=_number(obj, "grace_s", numbers.duration),
                           expires_at=_number(obj, "expires_at", numbers.timestamp))
    if kind == "watch":
        until = obj.get("until")
        return WatchRequest(uid=_get(obj, "uid", str),
                            until=0.0 if until == 0 else _number(obj, "until", numbers.timestamp),
                            expires_at=_number(obj, "expires_at", numbers.timestamp))
    if kind in REPORT_KINDS or kind in KILL_ANSWERS or kind in WATCH_ANSWERS:
        return _report(obj, kind)
    raise WireError(f"unknown kind {kind!r}")


def _report(obj: Mapping[str, Any], kind: str) -> AgentReport:
    try:
        raw = base64.b64decode(_get(obj, "data", str, optional=True) or "", validate=True)
    except (binascii.Error, ValueError):
        raise WireError("field 'data': not base64") from None
    return AgentReport(
        kind=kind, uid=_get(obj, "uid", str), worker=_get(obj, "worker", str),
        host=_get(obj, "host", str), pid=_number(obj, "pid", numbers.pid, optional=True),
        start_time=_number(obj, "start_time", numbers.timestamp, optional=True),
        harness=_get(obj, "harness", str, optional=True) or "",
        backend=_get(obj, "backend", str, optional=True) or "",
        note=_get(obj, "note", str, optional=True) or "",
        offset=_number(obj, "offset", numbers.offset, optional=True), data=raw,
        code=_number(obj, "code", numbers.exit_code, optional=True),
        request_key=_get(obj, "request_key", str, optional=True) or "",
        refusal=_refusal(_get(obj, "refusal", str, optional=True) or ""),
        activity=checked_activity(obj["activity"]) if obj.get("activity") is not None
        else None, lines=_lines(obj.get("lines"), "lines", SUMMARY_LINES + 1),
        signals=_lines(obj.get("signals"), "signals", SUMMARY_SIGNALS))


def _lines(value: object, name: str, most: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > most \
            or not all(isinstance(v, str) for v in value):
        raise WireError(f"field {name!r}: at most {most} strings")
    return tuple(v[:SUMMARY_LINE_CHARS] for v in value)


def _output_mode(value: str) -> str:
    if value not in OUTPUT_MODES:
        raise WireError(f"field 'output': {value[:20]!r}")
    return value


REFUSALS = ("", "claimed", "retry", "host")


def _refusal(value: str) -> str:
    """An unknown refusal (a newer worker's) counts as the request's fault: never retried
    on a word we do not understand."""
    return value if value in REFUSALS else ""


BATCH_BYTES = 384 * 1024
"""A worker's reports of one round go out in as few messages as fit under this (a chunk of
CHUNK_BYTES is 342 KiB in base64): one message per round, not one per agent."""


def encode_reports(reports: list[AgentReport]) -> list[bytes]:
    """Reports in order, packed into ``batch`` messages of at most about BATCH_BYTES."""
    messages: list[bytes] = []
    bodies: list[dict[str, Any]] = []
    size = 0
    for report in reports:
        body = _report_body(report)
        weight = len(body.get("data", "")) + 200
        if bodies and size + weight > BATCH_BYTES:
            messages.append(_dump({"v": WIRE_VERSION, "kind": "batch", "reports": bodies}))
            bodies, size = [], 0
        bodies.append(body)
        size += weight
    if bodies:
        messages.append(_dump({"v": WIRE_VERSION, "kind": "batch", "reports": bodies}))
    return messages


def decode_reports(data: bytes) -> list[AgentReport]:
    """One report or a batch of them; WireError for anything else."""
    obj = _load(data)
    if obj.get("v") != WIRE_VERSION:
        raise WireError(f"wire version {obj.get('v')!r} (this chump-tui speaks {WIRE_VERSION})")
    kind = _get(obj, "kind", str)
    if kind != "batch":
        single = decode(data)
        if not isinstance(single, AgentReport):
            raise WireError(f"a {type(single).__name__} among agents' reports")
        return [single]
    items = _get(obj, "reports", list)
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise WireError("a batch's report is not an object")
        item_kind = _get(item, "kind", str)
        if item_kind not in REPORT_KINDS:
            raise WireError(f"unknown report kind {item_kind!r}")
        out.append(_report(item, item_kind))
    return out


# ---------------------------------------------------------------- upstream's contract
@dataclass(frozen=True)
class Claim:
    """A value in ``chump_gaps`` as upstream's chump-coord writes it."""

    session_id: str
    claimed_at: str
    files: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return _dump({"session_id": self.session_id, "claimed_at": self.claimed_at,
                      "files": self.files})

    @classmethod
    def from_bytes(cls, data: bytes) -> Claim:
        obj = _load(data)
        files = obj.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise WireError("field 'files': expected a list of strings")
        return cls(_get(obj, "session_id", str), _get(obj, "claimed_at", str), files)


@dataclass(frozen=True)
class WorkerRecord:
    """A value in ``chump_workers``: upstream's fields, then ours (repo, slots, busy)."""

    worker_id: str
    backend: str
    machine: str
    harness: str
    started_at: str
    status: str  # active | terminal
    updated_at: str
    skills: list[str] = field(default_factory=list)
    current_gap: str | None = None
    repo: str = ""  # repo_key of the repository it serves
    max_parallel: int = 0
    running: int = 0
    busy: list[str] = field(default_factory=list)  # uids whose descendants use CPU
    heartbeat_s: float = 0.0
    degraded: str = ""  # why it takes no work now ("" : healthy); upstream's status stays
    key: str = ""  # the worker's public key: its reports are signed with it
    sig: str = ""  # the key's signature over the rest of the record
    verified: bool = field(default=False, compare=False)  # set by from_bytes

    def to_bytes(self) -> bytes:
        body = asdict(self)
        del body["verified"]
        return _dump(body)

    def signed(self, identity: Identity) -> bytes:
        body = asdict(self)
        del body["verified"], body["sig"]
        body["key"] = identity.public_key
        body["sig"] = identity.sign_b64(_canonical(body))
        return _dump(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkerRecord:
        obj = _load(data)
        key, sig = obj.get("key"), obj.get("sig")
        verified = (isinstance(key, str) and isinstance(sig, str)
                    and verify_b64(key, _canonical({k: v for k, v in obj.items()
                                                    if k != "sig"}), sig))
        lists = {}
        for name in ("skills", "busy"):
            value = obj.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise WireError(f"field {name!r}: expected a list of strings")
            lists[name] = value
        status = _get(obj, "status", str)
        if status not in ("active", "terminal"):
            raise WireError(f"field 'status': {status!r}")
        return cls(
            worker_id=_get(obj, "worker_id", str), backend=_get(obj, "backend", str),
            machine=_get(obj, "machine", str), harness=_get(obj, "harness", str),
            started_at=_get(obj, "started_at", str), status=status,
            updated_at=_get(obj, "updated_at", str),
            current_gap=_get(obj, "current_gap", str, optional=True),
            repo=_get(obj, "repo", str, optional=True) or "",
            max_parallel=_number(obj, "max_parallel", _slots, optional=True) or 0,
            running=_number(obj, "running", _slots, optional=True) or 0,
            heartbeat_s=_number(obj, "heartbeat_s", numbers.duration, optional=True) or 0.0,
            degraded=_get(obj, "degraded", str, optional=True) or "",
            key=key if isinstance(key, str) else "", sig=sig if isinstance(sig, str) else "",
            verified=verified, **lists)


def _canonical(obj: Mapping[str, Any]) -> bytes:
    """The bytes a presence record's signature covers: its fields, sorted, compact."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _slots(value: object) -> int | None:
    return numbers.int_in(value, 0, 100_000)


def done_gap(data: bytes) -> tuple[str, str] | None:
    """(gap, session) of an upstream DONE event, None for anything else."""
    try:
        obj = _load(data)
    except WireError:
        return None
    gap, session = obj.get("gap"), obj.get("session")
    if obj.get("event") != "DONE" or not isinstance(gap, str) or not gap:
        return None
    return gap, session if isinstance(session, str) else ""


def coord_event(kind: str, session: str, gap: str | None = None, reason: str | None = None,
                commit: str | None = None) -> bytes:
    """An upstream coordination event (``INTENT``, ``DONE``, ``STUCK``, ...)."""
    body: dict[str, Any] = {"event": kind, "session": session, "ts": rfc3339()}
    for name, value in (("gap", gap), ("reason", reason), ("commit", commit)):
        if value is not None:
            body[name] = value
    return _dump(body)
