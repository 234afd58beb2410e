"""A scripted Anthropic Messages API (``POST /v1/messages``) for the real ``claude`` CLI.

The CLI sends one request per turn with the whole conversation; the gap id is read
from the prompt (``working on gap <ID>``) and the turn is the number of tool results
so far. ``plan(gap_id, turn)`` says what the model does on that turn: call a tool,
answer with text, hang, or fail.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from tests.model_servers.base import Reply, Request
from tests.model_servers.plan import Fail, Hang, PlannedServer, Step, Tool

_ids = itertools.count(1)


def bash(command: str, description: str = "run a command") -> Tool:
    return Tool("Bash", {"command": command, "description": description})


def conversation_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [b.get("text", "") for b in content if isinstance(b, dict)]
    return "\n".join(parts)


def tool_results(body: dict[str, Any]) -> int:
    return sum(1 for m in body.get("messages") or [] if isinstance(m.get("content"), list)
               for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result")


@dataclass
class AnthropicServer(PlannedServer):
    model: str = "claude-scripted-1"

    def handle(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not request.path.startswith("/v1/messages"):
            return Reply(404, {"type": "error", "error": {"type": "not_found_error",
                                                           "message": request.path}})
        if request.path.startswith("/v1/messages/count_tokens"):
            return Reply(json_body={"input_tokens": 100})
        # A request without tools is a side request (title, summary): a short answer.
        step = self.step_for(conversation_text(body), tool_results(body),
                             main=bool(body.get("tools")))
        return self.reply(step, body, turn_tokens=100 * (len(body.get("messages") or []) + 1))

    def reply(self, step: Step, body: dict[str, Any], turn_tokens: int) -> Reply:
        if isinstance(step, Hang):
            return Reply(hang=True)
        if isinstance(step, Fail):
            return Reply(step.status, {"type": "error", "error": {
                "type": "invalid_request_error", "message": step.message}})
        message_id = f"msg_{next(_ids):06d}"
        if isinstance(step, Tool):
            block = {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": step.name,
                     "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(step.input)}]
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": step.text}]
            stop = "end_turn"
        usage = {"input_tokens": turn_tokens, "output_tokens": 1,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        start = {"id": message_id, "type": "message", "role": "assistant", "model": self.model,
                 "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            full = dict(start)
            done_block = dict(block)
            if isinstance(step, Tool):
                done_block["input"] = step.input
            else:
                done_block["text"] = step.text
            full.update(content=[done_block], stop_reason=stop,
                        usage={**usage, "output_tokens": 20})
            return Reply(json_body=full)
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": block}),
            *[("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
              for d in deltas],
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 20}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return Reply(events=events)
