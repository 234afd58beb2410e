"""A worker's agents' output on its way to the broker: read from the log files, redacted
with this host's secrets, published in order, then each agent's exit.

Secrets stay on the host that has them: every byte is redacted with this worker's own
environment (``chump_tui.log_lines.Redactor``, the same rule as local mode) before it
leaves. Offsets count the redacted stream the console mirrors; a log's position advances
only once the broker stored what was read from it, so a broker that is away delays the
output, never loses or reorders it, and bytes that may begin a secret wait for the read
that completes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chump_tui.fleet import wire
from chump_tui.fleet.broker import Broker, FleetError
from chump_tui.log_lines import Redactor

if TYPE_CHECKING:
    from chump_tui.agent_process import AgentProcess
    from chump_tui.fleet.worker import Hosted

CHUNK_BYTES = 256 * 1024


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

    def round(self, agents: list[tuple[Hosted, AgentProcess | None]],
              stopping: set[str] | frozenset[str] = frozenset()) -> list[Hosted]:
        """Publish what each agent wrote since the last round (all of it in one round trip),
        then the exit of each agent whose output is all out; returns those exited. An agent
        being killed (``stopping``) has ended only once its whole group has, as for a kill
        on the console's own machine."""
        ended = {h.uid: h.uid not in stopping and (p is None or p.poll() is not None)
                 for h, p in agents}
        chunks = [self._read(h, ended[h.uid]) for h, _ in agents]
        out = [c for c in chunks if c.data]
        reports = [wire.AgentReport(kind="output", uid=c.hosted.uid, worker=self.worker,
                                    host=self.worker, offset=c.hosted.sent, data=c.data)
                   for c in out]
        try:
            stored = all(self.broker.publish_many(
                [(self.subject, m) for m in wire.encode_reports(reports)]))
        except FleetError as exc:
            self.log(f"worker {self.worker}: publishing output: {exc}")
            return []
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
