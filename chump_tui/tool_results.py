"""Every tool an attempt called, with what it returned: read back from the attempt's log.

The output pane shows one line per tool result (and a failed one's first lines); this
is the rest, on demand (``t`` on the monitor). The log file is decoded again with the
harness's parser, from its last ``READ_LOG_TAIL`` bytes, and each call is paired with
its result by the harness's tool id. A result too long to parse whole (a megabyte on one
line) is said with its size; the log file keeps it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chump_tui.agent_process import READ_LOG_TAIL
from chump_tui.agent_streams.decoder import StreamFormat, decode
from chump_tui.agent_streams.events import ToolCall, ToolFinished
from chump_tui.log_lines import LineSplitter, human_bytes
from chump_tui.safe_fs import open_nofollow

MAX_RESULTS = 500


@dataclass(frozen=True)
class ToolResult:
    name: str
    arg: str
    ok: bool | None  # None: no result yet (running, or the agent stopped first)
    size: int
    text: str

    def body(self, log_path: Path) -> str:
        if self.ok is None:
            return "no result: the tool was still running when the agent stopped (or runs now)"
        if self.text:
            return self.text
        if self.size:
            return (f"a result of {human_bytes(self.size)}, too long to keep whole here; "
                    f"it is in {log_path}")
        return "(no output)"


def tool_results(log_path: Path, fmt: StreamFormat | None) -> list[ToolResult]:
    """The attempt's tool calls in order, each with its result (the last MAX_RESULTS)."""
    try:
        fd = open_nofollow(log_path, os.O_RDONLY)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size - READ_LOG_TAIL)
        fh.seek(start)
        data = fh.read(READ_LOG_TAIL)
    splitter = LineSplitter(skip_first=start > 0)
    events = decode(splitter.feed(data) + splitter.flush(), fmt)
    calls: dict[str, int] = {}  # tool id -> its index in found
    found: list[ToolResult] = []
    for event in events:
        if isinstance(event, ToolCall):
            calls[event.tool_id] = len(found)
            found.append(ToolResult(event.name, event.arg, None, 0, ""))
        elif isinstance(event, ToolFinished):
            index = calls.pop(event.tool_id, None)
            call = found[index] if index is not None else None
            result = ToolResult(event.name or (call.name if call else "tool"),
                                call.arg if call else "", event.ok, event.size, event.text)
            if index is not None:
                found[index] = result
            else:  # its call is before the part of the log read
                found.append(result)
    return found[-MAX_RESULTS:]
