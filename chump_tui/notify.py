"""Telling the operator without their watching the screen: notifications.

The ``Notifier`` listens to the engine and picks the moments an operator acts on: an attempt
ended (shipped, CI-failed, killed, exited without a PR, stalled, spawn-failed), an agent went
QUIET, one STALLED, a fleet host was LOST, a budget was crossed, everything is over. Those
within ``COALESCE_S`` of the first are one notification ("40 attempts ended: 30 shipped, 10
killed"), handed to every sink the operator chose:

- the terminal: a bell and a desktop-notification escape (OSC 9, or OSC 777 where the
  terminal speaks that one), built here from our own words only: outside text in it has
  every control character removed, so no gap title can end the escape or start another;
- the desktop: ``notify-send`` where it is installed;
- a webhook: a POST of a small JSON document (with a ``text`` field, what Slack-compatible
  receivers show), a timeout, retries with back-off; later notifications wait behind a
  failing one (in order, none lost up to ``MAX_QUEUED``) and the trouble is one line for the
  status line, not a notice per try;
- a command: run (no shell) with the notification as JSON on its stdin.

Every sink runs on a thread of its own: nothing here ever blocks the engine or the screen.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from chump_tui.events import Attention, DispatchChanged, EngineEvent
from chump_tui.outside_text import one_line

EVENT_KINDS = ("ended", "quiet", "stalled", "lost", "budget", "done")
DEFAULT_EVENTS = EVENT_KINDS
COALESCE_S = 1.0
WEBHOOK_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0
MAX_QUEUED = 200  # notifications waiting for a sink; past it the oldest are dropped


def parse_events(text: str) -> tuple[str, ...]:
    """``ended,quiet`` -> the kinds; ValueError naming an unknown one. ``all``: every kind."""
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    if kinds == ("all",):
        return EVENT_KINDS
    unknown = [k for k in kinds if k not in EVENT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown event {unknown[0] if unknown else text!r} (choose from "
                         f"{', '.join(EVENT_KINDS)} or all)")
    return kinds


@dataclass(frozen=True)
class Note:
    """One moment worth telling: its kind, the attempt (none for the session), what it says."""

    kind: str
    text: str
    key: str = ""
    gap: str = ""
    title: str = ""
    outcome: str = ""  # the card's label: SHIPPED, CI-FAILED, KILLED, EXITED 1, STALLED…
    reason: str = ""
    at: float = 0.0


@dataclass
class Batch:
    """The notes of one coalescing window: what each sink is given."""

    notes: list[Note]
    text: str
    at: float

    def document(self) -> dict[str, object]:
        """The JSON every webhook and command gets (``text``: for Slack-compatible ones)."""
        return {"source": "chump-tui", "text": self.text, "count": len(self.notes),
                "at": self.at, "events": [asdict(n) for n in self.notes]}


def summary_text(notes: Sequence[Note]) -> str:
    """One line for a window: the note itself (and that all is done), or how many of what."""
    done = any(n.kind == "done" for n in notes)
    others = [n for n in notes if n.kind != "done"]
    if len(others) <= 1:
        said = [n.text for n in others] + (["chump-tui: every agent is done"] if done else [])
        return "; ".join(said)
    by_kind = collections.Counter(n.kind for n in notes)
    parts = []
    for kind, count in by_kind.items():
        if kind == "ended":
            outcomes = collections.Counter(n.outcome.lower() for n in notes if n.kind == kind)
            detail = ", ".join(f"{v} {k}" for k, v in outcomes.most_common())
            parts.append(f"{count} attempt(s) ended ({detail})")
        elif kind == "done":
            parts.append("every agent is done")
        else:
            parts.append(f"{count} {kind}")
    return "chump-tui: " + "; ".join(parts)


class Notifier:
    """An engine listener (cheap: it only queues) and the thread that coalesces and sends."""

    def __init__(self, kinds: Iterable[str], sinks: Sequence[Sink],
                 all_over: Callable[[], bool], clock: Callable[[], float] = time.time,
                 window_s: float = COALESCE_S) -> None:
        self.kinds = frozenset(kinds)
        self.sinks = list(sinks)
        self.all_over = all_over  # nothing runs or waits any more (the engine says)
        self.clock = clock
        self.window_s = window_s
        self._pending: list[Note] = []
        self._cond = threading.Condition()
        self._closed = False
        self._hurry = False
        self._done_told = False
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def __call__(self, event: EngineEvent) -> None:
        note = self.note_for(event)
        if note is not None and note.kind in self.kinds:
            self._add(note)
        if note is not None and note.kind == "ended" and "done" in self.kinds:
            self._after_an_end()

    def note_for(self, event: EngineEvent) -> Note | None:
        if isinstance(event, Attention):
            return Note(event.kind, one_line(event.text, 300), event.key,
                        event.key.partition("#")[0], at=self.clock())
        if not isinstance(event, DispatchChanged):
            return None
        d = event.dispatch
        label = d.label()
        what = {"outcome": "lost" if d.lost else "ended", "spawn_failed": "ended",
                "stalled": "stalled"}.get(event.why)
        if what is None:
            return None
        if what == "stalled":
            text = f"{d.key} is past its soft deadline without a PR: {d.title}"
        else:
            reason = d.reason()
            text = f"{d.key} {label}{': ' + reason if reason else ''} — {d.title}"
        return Note(what, one_line(text, 300), d.key, d.gap_id, one_line(d.title, 200),
                    label, one_line(d.reason(), 300), self.clock())

    def _after_an_end(self) -> None:
        # Asked after the engine saved and announced the outcome; a refill that starts
        # more has reserved its rows by then (see Outcomes.finish).
        if self.all_over():
            if not self._done_told:
                self._done_told = True
                self._add(Note("done", "chump-tui: every agent is done", at=self.clock()))
        else:
            self._done_told = False

    def _add(self, note: Note) -> None:
        with self._cond:
            self._pending.append(note)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                first_at = time.monotonic()
                while not self._closed and not self._hurry \
                        and time.monotonic() - first_at < self.window_s:
                    self._cond.wait(self.window_s - (time.monotonic() - first_at))
                notes, self._pending = self._pending, []
                self._hurry = False
            batch = Batch(notes, summary_text(notes), self.clock())
            for sink in self.sinks:
                sink.put(batch)

    def trouble(self) -> str | None:
        """A sink's lasting failure, for the status line (e.g. the webhook's HTTP 500)."""
        for sink in self.sinks:
            problem = sink.trouble()
            if problem:
                return problem
        return None

    def flush(self, timeout_s: float) -> bool:
        """Send what is pending now and wait (bounded) for every sink."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._hurry = bool(self._pending)  # no waiting out the window for more
            self._cond.notify_all()
        while time.monotonic() < deadline:
            with self._cond:
                idle = not self._pending
            if idle and all(s.idle() for s in self.sinks):
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for sink in self.sinks:
            sink.close()


class Sink(ABC):
    """Delivers batches on a thread of its own, in order; a failed delivery is retried with
    back-off when ``retry`` is set, else dropped."""

    name = "sink"
    retry = False

    def __init__(self) -> None:
        self._queue: collections.deque[Batch] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self.error = ""
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.name}",
                                        daemon=True)
        self._thread.start()

    def put(self, batch: Batch) -> None:
        with self._cond:
            self._queue.append(batch)
            while len(self._queue) > MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def trouble(self) -> str | None:
        return f"{self.name}: {self.error} (retrying)" if self.error else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = FIRST_RETRY_S
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = self._queue[0]
                self._busy = True
            try:
                self.send(batch)
            except Exception as exc:  # a sink's failure is its own line, never the engine's
                self.error = one_line(str(exc) or type(exc).__name__, 120)
                with self._cond:
                    self._busy = False
                    if not self.retry:
                        self._queue.popleft()
                        continue
                    self._cond.wait(backoff)
                backoff = min(MAX_RETRY_S, backoff * 2)
                continue
            self.error = ""
            backoff = FIRST_RETRY_S
            with self._cond:
                self._queue.popleft()
                self._busy = False

    @abstractmethod
    def send(self, batch: Batch) -> None:
        """Deliver one batch; raise to say it failed (retried if ``retry``)."""


class TerminalSink(Sink):
    """A bell and an OSC 9 (or OSC 777) desktop notification, through ``write``."""

    name = "terminal"

    def __init__(self, write: Callable[[str], None], osc_777: bool = False) -> None:
        self.write = write
        self.osc_777 = osc_777
        super().__init__()

    def send(self, batch: Batch) -> None:
        self.write(terminal_bytes(batch.text, self.osc_777))


def escape_safe(text: str) -> str:
    """Outside text made fit for the inside of an escape: every control character (ESC, BEL,
    C1, newlines) removed, so it can neither end the sequence nor start another."""
    return "".join(ch for ch in one_line(text, 200)
                   if ch.isprintable() and not 0x80 <= ord(ch) < 0xA0)


def terminal_bytes(text: str, osc_777: bool = False) -> str:
    safe = escape_safe(text)
    if osc_777:
        return f"\a\x1b]777;notify;chump-tui;{safe}\x1b\\"
    return f"\a\x1b]9;{safe}\x1b\\"


def terminal_wants_777(environ: dict[str, str] | os._Environ[str]) -> bool:
    """VTE terminals (GNOME Terminal, Tilix) and urxvt show OSC 777; most others OSC 9."""
    return bool(environ.get("VTE_VERSION")) or environ.get("TERM", "").startswith("rxvt")


class DesktopSink(Sink):
    name = "notify-send"

    def __init__(self, binary: str) -> None:
        self.binary = binary
        super().__init__()

    def send(self, batch: Batch) -> None:
        subprocess.run([self.binary, "--app-name=chump-tui", "chump-tui",
                        one_line(batch.text, 300)], timeout=COMMAND_TIMEOUT_S, check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)


def desktop_sink() -> DesktopSink | None:
    found = shutil.which("notify-send")
    return DesktopSink(found) if found else None


class WebhookSink(Sink):
    name = "webhook"
    retry = True

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__()

    def send(self, batch: Batch) -> None:
        body = json.dumps(batch.document()).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "chump-tui"})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
                answer.read(1024)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RuntimeError(f"cannot reach it ({reason})") from None


def check_webhook_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; ValueError otherwise."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


class CommandSink(Sink):
    name = "command"

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        super().__init__()

    def send(self, batch: Batch) -> None:
        done = subprocess.run(self.argv, input=json.dumps(batch.document()).encode("utf-8"),
                              timeout=COMMAND_TIMEOUT_S, check=False, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"{self.argv[0]} exited {done.returncode}")


@dataclass
class NotifySettings:
    """What the operator asked for (flags and the config file)."""

    events: tuple[str, ...] = ()
    url: str = ""
    command: list[str] = field(default_factory=list)
    terminal: bool = True  # the console's (or plain mode's) own terminal, when it is one
    desktop: bool = True

    @property
    def wanted(self) -> bool:
        return bool(self.events)


def sinks_for(settings: NotifySettings, terminal_write: Callable[[str], None] | None,
              environ: dict[str, str] | os._Environ[str] = os.environ) -> list[Sink]:
    sinks: list[Sink] = []
    if settings.terminal and terminal_write is not None:
        sinks.append(TerminalSink(terminal_write, terminal_wants_777(environ)))
    if settings.desktop:
        desktop = desktop_sink()
        if desktop is not None:
            sinks.append(desktop)
    if settings.url:
        sinks.append(WebhookSink(settings.url))
    if settings.command:
        sinks.append(CommandSink(settings.command))
    return sinks
