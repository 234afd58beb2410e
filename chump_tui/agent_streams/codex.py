"""OpenAI Codex CLI's ``codex exec --json`` events (one object a line).

``thread.started``, ``turn.started``, ``item.started`` / ``item.completed`` whose
``item.type`` is ``command_execution`` (``command``, ``aggregated_output``,
``exit_code``, ``status``), ``agent_message`` (``text``), ``reasoning``,
``file_change``, ``error``; ``turn.completed`` with ``usage`` (``input_tokens``,
``cached_input_tokens``, ``output_tokens``, ``reasoning_output_tokens``);
``turn.failed``; a top-level ``error`` ("Reconnecting…" while the model server is
down: output, but not progress). Codex reports no cost: tokens only.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from chump_tui.agent_streams.events import (
    AgentError,
    AgentEvent,
    AssistantText,
    Retrying,
    SessionStarted,
    StepStarted,
    Thinking,
    ToolCall,
    ToolFinished,
    TurnUsage,
)
from chump_tui.agent_streams.fields import (
    as_count,
    as_dict,
    as_exit_code,
    as_list,
    as_str,
    first_line,
    head_fields,
    kept_text,
)

_SHELL_WRAP = re.compile(r"^/\S*(?:ba|z)?sh\s+-l?c\s+(.+)$", re.S)


def parse(event: dict[str, Any]) -> list[AgentEvent]:
    kind = event.get("type")
    if kind == "thread.started":
        return [SessionStarted(as_str(event.get("thread_id")), "")]
    if kind == "turn.started":
        return [StepStarted()]
    if kind in ("item.started", "item.completed"):
        return _item(as_dict(event.get("item")), kind == "item.completed")
    if kind == "turn.completed":
        usage = as_dict(event.get("usage"))
        return [TurnUsage(as_count(usage.get("input_tokens")) or 0,
                          as_count(usage.get("output_tokens")) or 0)]
    if kind == "turn.failed":
        return [AgentError(_message(as_dict(event.get("error")).get("message")), fatal=True)]
    if kind == "error":
        message = _message(event.get("message"))
        if message.lower().startswith("reconnecting"):
            return [Retrying(message)]
        return [AgentError(message)]
    return []


def parse_cut(head: str, size: int) -> list[AgentEvent]:
    found = head_fields(head)
    if found.get("type") == "item.completed" and '"command_execution"' in head:
        ok = '"exit_code":0' in head.replace(" ", "")
        return [ToolFinished(found.get("id", ""), ok, size, "")]
    return []


def _item(item: dict[str, Any], done: bool) -> list[AgentEvent]:
    kind = item.get("type")
    item_id = as_str(item.get("id"))
    if kind == "command_execution":
        if not done:
            return [ToolCall(item_id, "Bash", command_shown(as_str(item.get("command"))))]
        output = as_str(item.get("aggregated_output"))
        code = as_exit_code(item.get("exit_code"))
        ok = code == 0 and item.get("status") != "failed"
        preview = first_line(output) or (f"exit {'?' if code is None else code}"
                                         if not ok else "")
        return [ToolFinished(item_id, ok, len(output.encode("utf-8", errors="replace")),
                             preview, text=kept_text(output))]
    if not done:
        return []
    if kind == "agent_message":
        text = as_str(item.get("text"))
        return [AssistantText(text)] if text.strip() else []
    if kind == "reasoning":
        return [Thinking()]
    if kind == "file_change":
        paths = [as_str(as_dict(c).get("path")) for c in as_list(item.get("changes"))]
        shown = ", ".join(p for p in paths if p)
        return [ToolCall(item_id, "Edit", shown),
                ToolFinished(item_id, item.get("status") != "failed", 0, shown)]
    if kind == "error":
        return [AgentError(_message(item.get("message")))]
    return []


def command_shown(command: str) -> str:
    """``/bin/bash -lc 'cargo test'`` as ``cargo test``."""
    match = _SHELL_WRAP.match(command.strip())
    if match:
        try:
            parts = shlex.split(match.group(1))
        except ValueError:
            parts = []
        if len(parts) == 1:
            return first_line(parts[0])
    return first_line(command)


def _message(value: Any) -> str:
    """Codex wraps the API's error as JSON text: the message inside, when there is one."""
    text = as_str(value)
    try:
        inner = json.loads(text)
    except ValueError:
        return text
    nested = as_str(as_dict(as_dict(inner).get("error")).get("message"))
    return nested or text
