"""A worker's agents' output on its way to the broker: read from the log files, redacted
with this host's secrets, published in order, then each agent's exit.

Secrets stay on the host that has them: every byte is redacted with this worker's own
environment (``chump_tui.log_lines.Redactor``, the same rule as local mode) before it
leaves. Offsets count the redacted stream the console mirrors; a log's position advances
only once the broker stored what was read from it, so a broker that is away delays the
output, never loses or reorders it, and bytes that may begin a secret wait for the read
that completes them.

An agent dispatched with ``output: summary`` has only its summaries sent
(``chump_tui.fleet.summaries``), and its bytes too while a console watches it (from the
last ``WATCH_TAIL_BYTES`` of its log on, the first time): the rest stays in its log here.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chump_tui.fleet import wire
from chump_tui.fleet.broker import Broker, FleetError
from chump_tui.fleet.summaries import Summaries
from chump_tui.log_lines import Redactor

if TYPE_CHECKING:
    from chump_tui.agent_process import AgentProcess, OutputLog
    from chump_tui.fleet.worker import Hosted

CHUNK_BYTES = 256 * 1024
WATCH_TAIL_BYTES = 64 * 1024  # a watch starts this far from a summarised log's end


@dataclass
class _Chunk:
    hosted: Hosted
    raw_len: int  # bytes of the log read
    held: int  # of those, held back (maybe a secret's start)
    data: bytes  # what is published (redacted)


class OutputPump:
    def __init__(self, broker: Broker, subject: str, worker: str, redactor: Redactor,
                 log: Callable[[str], None]) -> None:
        self.broker = broker
        self.subject = subject
        self.worker = worker
        self.redactor = redactor
        self.log = log
        self.outputs: dict[str, OutputLog] = {}  # what the worker parsed of each agent
        self.summaries = Summaries(worker, redactor)
        self._watched: dict[str, float] = {}  # uid -> until (time.time())
        self._lock = threading.Lock()

    def watch(self, hosted: Hosted, until: float) -> None:
        """A console watches this agent until then (0: no more); from the broker's loop."""
        with self._lock:
            if until <= time.time():
                self._watched.pop(hosted.uid, None)
            else:
                starting = hosted.uid not in self._watched
                self._watched[hosted.uid] = until
                if starting and hosted.output_mode == "summary":
                    self._skip_to_tail(hosted)

    def _skip_to_tail(self, hosted: Hosted) -> None:
        """A summarised agent's log is sent from near its end (a line's start), not all of
        it; the console is told how much it did not get."""
        try:
            size = os.path.getsize(hosted.log_path)
        except OSError:
            return
        start = max(hosted.file_pos, size - WATCH_TAIL_BYTES)
        if start > hosted.file_pos:
            with contextlib.suppress(OSError), open(hosted.log_path, "rb") as fh:
                fh.seek(start)
                start += len(fh.readline())
            hosted.sent += start - hosted.file_pos
            hosted.file_pos = start

    def _sends_bytes(self, hosted: Hosted, now: float) -> bool:
        with self._lock:
            return hosted.output_mode != "summary" or self._watched.get(hosted.uid, 0) > now

    def round(self, agents: list[tuple[Hosted, AgentProcess | None]],
              stopping: set[str] | frozenset[str] = frozenset()) -> list[Hosted]:
        """Publish what each agent wrote since the last round (all of it in one round trip),
        then the exit of each agent whose output is all out; returns those exited. An agent
        being killed (``stopping``) has ended only once its whole group has, as for a kill
        on the console's own machine."""
        ended = {h.uid: h.uid not in stopping and (p is None or p.poll() is not None)
                 for h, p in agents}
        now = time.time()
        bytes_of = [h for h, _ in agents if self._sends_bytes(h, now)]
        chunks = [self._read(h, ended[h.uid]) for h in bytes_of]
        out = [c for c in chunks if c.data]
        reports = [wire.AgentReport(kind="output", uid=c.hosted.uid, worker=self.worker,
                                    host=self.worker, offset=c.hosted.sent, data=c.data)
                   for c in out]
        summaries, finals = self._summaries(agents, ended)
        reports += summaries
        try:
            stored = all(self.broker.publish_many(
                [(self.subject, m) for m in wire.encode_reports(reports)]))
        except FleetError as exc:
            self.log(f"worker {self.worker}: publishing output: {exc}")
            return []
        if stored:
            self.summaries.stored([r.uid for r in summaries])
            for uid in finals:  # its last summary is out: its exit may follow
                self.outputs.pop(uid, None)
                self.summaries.forget(uid)
        more: set[str] = set()
        for chunk in chunks:
            hosted = chunk.hosted
            if stored:  # else all of it again next round: the console skips what it has
                hosted.file_pos += chunk.raw_len - chunk.held
                hosted.sent += len(chunk.data)
            if not stored or chunk.raw_len == CHUNK_BYTES or chunk.held:
                more.add(hosted.uid)  # its exit is reported after all of its output
        exited: list[Hosted] = []
        for hosted, process in agents:
            if hosted.uid in more or not ended[hosted.uid]:
                continue
            if hosted.output_mode == "summary" and not self._summarised(hosted):
                continue  # its last summary first
            code = process.poll() if process is not None else 0
            report = wire.AgentReport(kind="exited", uid=hosted.uid, worker=self.worker,
                                      host=self.worker, code=0 if code is None else code)
            try:
                self.broker.publish(self.subject, wire.encode(report))
            except FleetError as exc:
                self.log(f"worker {self.worker}: publishing {hosted.key}: {exc}")
                break
            hosted.exit_code = report.code
            exited.append(hosted)
        return exited

    def _summaries(self, agents: list[tuple[Hosted, AgentProcess | None]],
                   ended: dict[str, bool]) -> tuple[list[wire.AgentReport], list[str]]:
        """The summaries due this round, and whose are the last; an ended agent's last
        once its follower read the whole log (its cost is in the last lines)."""
        due, finals = [], []
        for hosted, process in agents:
            output = self.outputs.get(hosted.uid)
            if hosted.output_mode != "summary" or output is None:
                continue
            final = ended[hosted.uid]
            if final and process is not None:
                process.join_output(1.0)
            report = self.summaries.due(hosted.uid, output, final)
            if report is not None:
                due.append(report)
                if final:
                    finals.append(hosted.uid)
        return due, finals

    def _summarised(self, hosted: Hosted) -> bool:
        """Its last summary went out (or it has none to send)."""
        return hosted.uid not in self.outputs

    def _read(self, hosted: Hosted, ended: bool) -> _Chunk:
        """The next chunk of the log from the last published position, redacted; the
        position is not advanced here. ``ended``: the agent exited, so the last bytes
        of its log are its last (nothing is held back for a secret's rest)."""
        try:
            with open(hosted.log_path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < hosted.file_pos:  # capped (truncated) by its follower
                    hosted.file_pos = 0
                fh.seek(hosted.file_pos)
                raw = fh.read(CHUNK_BYTES)
        except OSError:
            return _Chunk(hosted, 0, 0, b"")
        final = ended and len(raw) < CHUNK_BYTES
        data, held = self.redactor.redact_stream(raw, final)
        return _Chunk(hosted, len(raw), held, data)
