"""Google's Gemini CLI ``--output-format stream-json`` events (one object a line).

``init`` (``session_id``, ``model``), ``message`` (``role``, ``content``, ``delta``),
``tool_use`` (``tool_name``, ``tool_id``, ``parameters``), ``tool_result``
(``tool_id``, ``status``, ``output``; ``status`` stays ``success`` when a command
exits non-zero: the output says so), ``result`` (``status``, ``error``, ``stats`` with
``input_tokens``, ``output_tokens``, ``duration_ms``, ``tool_calls``). No cost.
"""

from __future__ import annotations

import re
from typing import Any

from chump_tui.agent_streams.events import (
    AgentEvent,
    AssistantText,
    Finished,
    SessionStarted,
    ToolCall,
    ToolFinished,
    TurnUsage,
)
from chump_tui.agent_streams.fields import (
    as_count,
    as_dict,
    as_str,
    first_line,
    head_fields,
    kept_text,
    key_arg,
    tool_label,
)

_EXITED = re.compile(r"(?:Command )?exited with code:?\s*(-?\d+)", re.I)
_API_ERROR = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


def parse(event: dict[str, Any]) -> list[AgentEvent]:
    kind = event.get("type")
    if kind == "init":
        return [SessionStarted(as_str(event.get("session_id")), as_str(event.get("model")))]
    if kind == "message":
        text = as_str(event.get("content"))
        if event.get("role") == "assistant" and text.strip():
            return [AssistantText(text)]
        return []
    if kind == "tool_use":
        name = as_str(event.get("tool_name")) or "tool"
        # One model step per tool call: Gemini reports no turns of its own until the end.
        return [ToolCall(as_str(event.get("tool_id")), tool_label(name),
                         key_arg(name, event.get("parameters"))), TurnUsage(0, 0)]
    if kind == "tool_result":
        output = as_str(event.get("output"))
        exited = _EXITED.search(output)
        ok = event.get("status") == "success" and not (exited and exited.group(1) != "0")
        return [ToolFinished(as_str(event.get("tool_id")), ok,
                             len(output.encode("utf-8", errors="replace")), first_line(output),
                             text=kept_text(output))]
    if kind == "result":
        return [_result(event)]
    return []


def parse_cut(head: str, size: int) -> list[AgentEvent]:
    found = head_fields(head)
    if found.get("type") == "tool_result":
        return [ToolFinished("", '"status":"success"' in head.replace(" ", ""), size, "")]
    return []


def _result(event: dict[str, Any]) -> Finished:
    stats = as_dict(event.get("stats"))
    ok = event.get("status") == "success"
    message = as_str(as_dict(event.get("error")).get("message"))
    inner = _API_ERROR.search(message.replace('\\"', '"'))
    text = inner.group(1) if inner else message
    calls = as_count(stats.get("tool_calls"))
    return Finished(ok=ok, text=text, subtype="" if ok else as_str(event.get("status")),
                    turns=calls + 1 if calls is not None else None,
                    tokens_in=as_count(stats.get("input_tokens")),
                    tokens_out=as_count(stats.get("output_tokens")),
                    duration_ms=as_count(stats.get("duration_ms")))
