"""A scripted OpenAI-compatible Chat Completions API (``POST /v1/chat/completions``) for the
real ``opencode`` CLI: streamed ``chat.completion.chunk`` deltas with ``tool_calls`` for its
``bash`` tool or text, ``finish_reason``, ``usage``, then ``data: [DONE]``. The first request
of a run has no tools (a title): it gets text."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.model_servers.base import Reply, Request
from tests.model_servers.plan import Fail, Hang, PlannedServer, Step, Tool

_ids = itertools.count(1)
MODEL = "scripted-coder"


def bash(command: str) -> Tool:
    return Tool("bash", {"command": command, "description": "a scripted step"})


def texts(body: dict[str, Any]) -> str:
    out: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [p.get("text", "") for p in content if isinstance(p, dict)]
    return "\n".join(out)


def tool_messages(body: dict[str, Any]) -> int:
    return sum(1 for m in body.get("messages") or [] if m.get("role") == "tool")


@dataclass
class ChatServer(PlannedServer):

    def handle(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if request.path.rstrip("/").endswith("/models"):
            return Reply(json_body={"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        if not request.path.startswith("/v1/chat/completions"):
            return Reply(404, {"error": {"message": request.path}})
        step = self.step_for(texts(body), tool_messages(body), main=bool(body.get("tools")), idle="a title")
        return self.reply(step, 100 * (len(body.get("messages") or []) + 1))

    def reply(self, step: Step, tokens_in: int) -> Reply:
        if isinstance(step, Hang):
            return Reply(hang=True)
        if isinstance(step, Fail):
            return Reply(step.status, {"error": {"message": step.message,
                                                 "type": "invalid_request_error"}})
        n = next(_ids)

        def chunk(delta: dict[str, Any], finish: str | None = None,
                  usage: dict[str, int] | None = None) -> tuple[None, dict[str, Any]]:
            data: dict[str, Any] = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk",
                                    "created": 0, "model": MODEL, "choices": [
                                        {"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                data["usage"] = usage
            return None, data

        usage = {"prompt_tokens": tokens_in, "completion_tokens": 20,
                 "total_tokens": tokens_in + 20}
        if isinstance(step, Tool):
            events = [chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": f"call_{n}", "type": "function",
                 "function": {"name": step.name, "arguments": json.dumps(step.input)}}]}),
                chunk({}, "tool_calls", usage)]
        else:
            events = [chunk({"role": "assistant", "content": step.text}),
                      chunk({}, "stop", usage)]
        return Reply(events=events, done_marker=True)


def opencode_config(directory: Path, url: str) -> Path:
    """An OPENCODE_CONFIG file naming the scripted server as an OpenAI-compatible provider."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "opencode.json"
    path.write_text(json.dumps({
        "$schema": "https://opencode.ai/config.json",
        "model": f"scripted/{MODEL}",
        "provider": {"scripted": {"npm": "@ai-sdk/openai-compatible", "name": "scripted",
                                  "options": {"baseURL": f"{url}/v1", "apiKey": "sk-scripted"},
                                  "models": {MODEL: {"name": "Scripted coder"}}}},
    }))
    return path
