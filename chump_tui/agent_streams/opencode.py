"""opencode's ``opencode run --format json`` events (one object a line).

``step_start``; ``tool_use`` whose ``part`` has ``tool``, ``state.input`` (e.g.
``command``), ``state.output``, ``state.metadata.exit``, ``state.status``; ``text``
(``part.text``); ``step_finish`` with ``part.tokens`` (``input``, ``output``,
``reasoning``, ``cache``), ``part.cost``, ``part.reason``; ``error``. Every event names its
``sessionID`` (a follow-up resumes it); a step's start reports it. A ``tool_use``
arrives only once the tool has finished: until then the card shows the step running.
"""

from __future__ import annotations

from typing import Any

from chump_tui.agent_streams.events import (
    AgentError,
    AgentEvent,
    AssistantText,
    StepStarted,
    ToolCall,
    ToolFinished,
    TurnUsage,
)
from chump_tui.agent_streams.fields import (
    as_cost,
    as_count,
    as_dict,
    as_exit_code,
    as_str,
    first_line,
    head_fields,
    kept_text,
    key_arg,
    tool_label,
)


def parse(event: dict[str, Any]) -> list[AgentEvent]:
    kind = event.get("type")
    part = as_dict(event.get("part"))
    if kind == "step_start":
        return [StepStarted(as_str(event.get("sessionID")))]
    if kind == "tool_use":
        return _tool(part)
    if kind == "text":
        text = as_str(part.get("text"))
        return [AssistantText(text)] if text.strip() else []
    if kind == "step_finish":
        tokens = as_dict(part.get("tokens"))
        cache = as_dict(tokens.get("cache"))
        cost = as_cost(part.get("cost"))
        return [TurnUsage((as_count(tokens.get("input")) or 0) + (as_count(cache.get("read")) or 0),
                          as_count(tokens.get("output")) or 0,
                          cost if cost else None)]  # 0: a provider without prices, not free
    if kind == "error":
        error = as_dict(event.get("error"))
        message = as_str(as_dict(error.get("data")).get("message")) or as_str(error.get("name"))
        return [AgentError(message or "opencode reported an error", fatal=True)]
    return []


def parse_cut(head: str, size: int) -> list[AgentEvent]:
    found = head_fields(head)
    if found.get("type") == "tool_use":
        return [ToolFinished("", '"exit":0' in head.replace(" ", ""), size, "")]
    return []


def _tool(part: dict[str, Any]) -> list[AgentEvent]:
    name = as_str(part.get("tool")) or "tool"
    state = as_dict(part.get("state"))
    call_id = as_str(part.get("callID"))
    output = as_str(state.get("output"))
    raw_exit = as_dict(state.get("metadata")).get("exit")
    exit_code = as_exit_code(raw_exit)
    ok = state.get("status") == "completed" and (raw_exit is None or exit_code == 0)
    preview = first_line(output) if output != "(no output)" else ""
    if not ok and exit_code not in (0, None):
        preview = f"exit {exit_code}" + (f": {preview}" if preview else "")
    return [ToolCall(call_id, tool_label(name), key_arg(name, state.get("input"))),
            ToolFinished(call_id, ok, len(output.encode("utf-8", errors="replace")), preview,
                         text=kept_text(output))]
