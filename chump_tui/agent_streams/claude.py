"""Claude Code's ``--output-format stream-json --verbose`` events.

One JSON object per line: ``system`` (``init`` with the session and model),
``assistant`` (a message's content blocks: ``text``, ``thinking``, ``tool_use``;
its ``usage``), ``user`` (``tool_result`` blocks) and the final ``result``
(``subtype``, ``is_error``, ``num_turns``, ``total_cost_usd``, ``usage``,
``duration_ms``, ``result``). Other types are ignored: the format grows.
"""

from __future__ import annotations

from typing import Any

from chump_tui.agent_streams.events import (
    AgentEvent,
    AssistantText,
    Finished,
    MessageUsage,
    Retrying,
    SessionStarted,
    Thinking,
    ToolCall,
    ToolFinished,
)
from chump_tui.agent_streams.fields import (
    as_cost,
    as_count,
    as_dict,
    as_list,
    as_str,
    first_line,
    head_fields,
    kept_text,
    key_arg,
    text_of,
    text_size,
)


def parse(event: dict[str, Any]) -> list[AgentEvent]:
    kind = event.get("type")
    if kind == "system":
        subtype = event.get("subtype")
        if subtype == "init":
            return [SessionStarted(as_str(event.get("session_id")), as_str(event.get("model")))]
        if subtype == "api_retry":
            return [Retrying(f"retry {as_count(event.get('attempt')) or ''}".strip())]
        return []
    if kind == "assistant":
        return _assistant(as_dict(event.get("message")))
    if kind == "user":
        return _tool_results(as_dict(event.get("message")))
    if kind == "result":
        return [_result(event)]
    return []


def parse_cut(head: str, size: int) -> list[AgentEvent]:
    """A line too long to parse (a big tool result or file write), from its first bytes."""
    found = head_fields(head)
    if found.get("type") == "user" and "tool_use_id" in found:
        ok = '"is_error":true' not in head.replace(" ", "")
        return [ToolFinished(found["tool_use_id"], ok, size, "")]
    if found.get("type") == "assistant" and "name" in found:
        return [ToolCall("", found["name"], "")]
    return []


def _assistant(message: dict[str, Any]) -> list[AgentEvent]:
    out: list[AgentEvent] = []
    for block in as_list(message.get("content")):
        block = as_dict(block)
        kind = block.get("type")
        if kind == "text":
            text = as_str(block.get("text"))
            if text.strip():
                out.append(AssistantText(text))
        elif kind in ("thinking", "redacted_thinking"):
            out.append(Thinking())
        elif kind == "tool_use":
            name = as_str(block.get("name")) or "tool"
            out.append(ToolCall(as_str(block.get("id")), name, key_arg(name, block.get("input"))))
    usage = as_dict(message.get("usage"))
    if usage:
        out.append(MessageUsage(as_str(message.get("id")), _tokens_in(usage),
                                as_count(usage.get("output_tokens")) or 0))
    return out


def _tool_results(message: dict[str, Any]) -> list[AgentEvent]:
    out: list[AgentEvent] = []
    for block in as_list(message.get("content")):
        block = as_dict(block)
        if block.get("type") != "tool_result":
            continue
        content = block.get("content")
        text = text_of(content)
        out.append(ToolFinished(as_str(block.get("tool_use_id")), block.get("is_error") is not True,
                                text_size(content), first_line(text), text=kept_text(text)))
    return out


def _result(event: dict[str, Any]) -> Finished:
    usage = as_dict(event.get("usage"))
    is_error = event.get("is_error") is True or as_str(event.get("subtype")).startswith("error")
    text = as_str(event.get("result"))
    if not text and is_error:
        text = "; ".join(as_str(e) for e in as_list(event.get("errors")) if isinstance(e, str))
    return Finished(
        ok=not is_error, text=text, subtype=as_str(event.get("subtype")),
        turns=as_count(event.get("num_turns")), cost_usd=as_cost(event.get("total_cost_usd")),
        tokens_in=_tokens_in(usage) if usage else None,
        tokens_out=as_count(usage.get("output_tokens")) if usage else None,
        duration_ms=as_count(event.get("duration_ms")),
    )


def _tokens_in(usage: dict[str, Any]) -> int:
    """Everything the model read: fresh input plus cache writes and cache reads."""
    return sum(as_count(usage.get(k)) or 0 for k in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
