"""A scripted OpenAI Responses API (``POST /v1/responses``) for the real ``codex`` CLI.

Codex sends the whole conversation each turn; the gap id is read from the prompt and the
turn is the number of ``function_call_output`` items so far. A tool call is the shell tool
this codex version offers (``exec_command`` with ``cmd``; ``"login": false`` so the command
keeps codex's PATH, where a test puts its stub ``gh``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.model_servers.base import Reply, Request
from tests.model_servers.plan import Fail, Hang, PlannedServer, Step, Tool

_ids = itertools.count(1)


def shell(command: str) -> Tool:
    return Tool("exec_command", {"cmd": command, "login": False})


def texts(body: dict[str, Any]) -> str:
    out: list[str] = []
    for item in body.get("input") or []:
        for part in item.get("content") or [] if isinstance(item, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return "\n".join(out)


def tool_outputs(body: dict[str, Any]) -> int:
    return sum(1 for item in body.get("input") or []
               if isinstance(item, dict) and item.get("type") == "function_call_output")


@dataclass
class ResponsesServer(PlannedServer):

    def handle(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not request.path.startswith("/v1/responses"):
            return Reply(404, {"error": {"message": request.path}})
        step = self.step_for(texts(body), tool_outputs(body))
        return self.reply(step, 100 * (len(body.get("input") or []) + 1))

    def reply(self, step: Step, tokens_in: int) -> Reply:
        if isinstance(step, Hang):
            return Reply(hang=True)
        if isinstance(step, Fail):
            return Reply(step.status, {"error": {"message": step.message,
                                                 "type": "invalid_request_error"}})
        n = next(_ids)
        if isinstance(step, Tool):
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                    "name": step.name, "arguments": json.dumps(step.input), "status": "completed"}
        else:
            item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": step.text, "annotations": []}]}
        usage = {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": tokens_in + 20}
        return Reply(events=[
            ("response.created", {"type": "response.created", "response": {"id": f"resp_{n}"}}),
            ("response.output_item.added", {"type": "response.output_item.added",
                                            "output_index": 0, "item": item}),
            ("response.output_item.done", {"type": "response.output_item.done",
                                           "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed",
                                    "response": {"id": f"resp_{n}", "usage": usage}}),
        ])


def codex_home(directory: Path, url: str) -> Path:
    """A CODEX_HOME whose config points codex at ``url`` (the scripted server)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(
        'model = "gpt-scripted"\nmodel_provider = "scripted"\n\n'
        '[model_providers.scripted]\nname = "scripted"\n'
        f'base_url = "{url}/v1"\nenv_key = "SCRIPTED_API_KEY"\nwire_api = "responses"\n')
    return directory
