"""Lines of an agent's output into events: JSON events through the harness's parser, every
other line (plain text, garbage, a JSON value that is not an event) as a plain line."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chump_tui.agent_streams.events import AgentEvent, PlainLine
from chump_tui.log_lines import Line, display_pieces


@dataclass(frozen=True)
class StreamFormat:
    """How one harness writes events: its parser, and a best effort for over-long lines."""

    name: str
    parse: Callable[[dict[str, Any]], list[AgentEvent]]
    parse_cut: Callable[[str, int], list[AgentEvent]]


def decode(lines: list[Line], fmt: StreamFormat | None) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    for line in lines:
        if fmt is not None and line.json_candidate:
            parsed = _parse(line, fmt)
            if parsed is not None:
                events += parsed
                continue
        beside = fmt is not None
        events += [PlainLine(piece, beside) for piece in display_pieces(line)]
    return events


def _parse(line: Line, fmt: StreamFormat) -> list[AgentEvent] | None:
    """The line's events, or None when it is not an event of this format."""
    try:
        if line.cut:
            return fmt.parse_cut(line.text, line.size) or None
        value = json.loads(line.text)
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            return None
        return fmt.parse(value)
    except (ValueError, RecursionError):
        return None
    except Exception as exc:  # a parser bug must not stop the follower of a hundred agents
        return [PlainLine(f"[chump-tui] could not read a {fmt.name} event ({exc!r})")]
