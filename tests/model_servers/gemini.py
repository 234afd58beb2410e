"""A scripted Gemini API for the real ``gemini`` CLI:
``POST /v1beta/models/<M>:streamGenerateContent?alt=sse`` answered with ``data:`` events
carrying a ``functionCall`` (``run_shell_command``) or a text part; side calls to
``:generateContent`` (its model router) get a small JSON answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.model_servers.base import Reply, Request
from tests.model_servers.plan import Fail, Hang, PlannedServer, Tool


def shell(command: str) -> Tool:
    return Tool("run_shell_command", {"command": command, "description": "a scripted step"})


def texts(body: dict[str, Any]) -> str:
    return "\n".join(part.get("text", "") for content in body.get("contents") or []
                     for part in content.get("parts") or [] if isinstance(part, dict)
                     and isinstance(part.get("text"), str))


def responses(body: dict[str, Any]) -> int:
    return sum(1 for content in body.get("contents") or []
               for part in content.get("parts") or []
               if isinstance(part, dict) and "functionResponse" in part)


@dataclass
class GeminiServer(PlannedServer):

    def handle(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if ":countTokens" in request.path:
            return Reply(json_body={"totalTokens": 10})
        if ":generateContent" in request.path:  # the router: pick a model, briefly
            return Reply(json_body=self.candidate(
                {"text": json.dumps({"reasoning": "scripted", "model_choice": "flash"})}, 1))
        if ":streamGenerateContent" not in request.path:
            return Reply(404, {"error": {"message": request.path}})
        step = self.step_for(texts(body), responses(body))
        if isinstance(step, Hang):
            return Reply(hang=True)
        if isinstance(step, Fail):
            return Reply(step.status, {"error": {"code": step.status, "message": step.message,
                                                 "status": "INVALID_ARGUMENT"}})
        part = ({"functionCall": {"name": step.name, "args": step.input}}
                if isinstance(step, Tool) else {"text": step.text})
        return Reply(events=[(None, self.candidate(part, 100 * (len(body.get("contents") or [])
                                                               + 1)))])

    @staticmethod
    def candidate(part: dict[str, Any], tokens_in: int) -> dict[str, Any]:
        return {"candidates": [{"content": {"role": "model", "parts": [part]},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": tokens_in, "candidatesTokenCount": 20,
                                  "totalTokenCount": tokens_in + 20}}


def gemini_home(directory: Path) -> Path:
    """A HOME whose ~/.gemini/settings.json selects API-key auth."""
    settings = directory / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}}))
    return directory
