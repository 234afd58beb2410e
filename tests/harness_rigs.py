"""For each agent CLI: its scripted model server, its shell tool call, and the environment
that points the real CLI at the server (offline, its config kept in a temp directory)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.agent_clis import agent_cli
from tests.model_servers import anthropic, chat_completions, gemini, openai_responses
from tests.model_servers.base import ScriptedServer
from tests.model_servers.plan import Plan, Say, Step, Tool


@dataclass(frozen=True)
class Rig:
    name: str
    shell: Callable[[str], Tool]
    server: Callable[[Plan], Any]  # .start() -> ScriptedServer, .main_requests
    environment: Callable[[str, Path], dict[str, str]]  # (server url, temp dir) -> env


def _claude_env(url: str, tmp: Path) -> dict[str, str]:
    env = {"CHUMP_CLAUDE_BIN": str(agent_cli("claude")), "ANTHROPIC_BASE_URL": url,
           "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "CLAUDE_CONFIG_DIR": str(tmp / "claude-config")}
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"
    return env


def _codex_env(url: str, tmp: Path) -> dict[str, str]:
    home = openai_responses.codex_home(tmp / "codex-home", url)
    return {"CHUMP_CODEX_BIN": str(agent_cli("codex")), "CODEX_HOME": str(home),
            "SCRIPTED_API_KEY": "sk-scripted-not-a-real-key"}


def _opencode_env(url: str, tmp: Path) -> dict[str, str]:
    config = chat_completions.opencode_config(tmp / "opencode", url)
    xdg = tmp / "opencode-xdg"
    env = {"CHUMP_OPENCODE_BIN": str(agent_cli("opencode")), "OPENCODE_CONFIG": str(config),
           "XDG_CONFIG_HOME": str(xdg / "config"), "XDG_DATA_HOME": str(xdg / "data"),
           "XDG_CACHE_HOME": str(xdg / "cache"), "XDG_STATE_HOME": str(xdg / "state"),
           "OPENCODE_DISABLE_MODELS_FETCH": "1"}
    # opencode migrates its database on its first run: two first runs at once race (one
    # fails "Failed query: CREATE TABLE"). An operator's machine has run it before; so does
    # this one, once, here.
    subprocess.run([env["CHUMP_OPENCODE_BIN"], "session", "list"], env={**os.environ, **env},
                   capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    return env


def _gemini_env(url: str, tmp: Path) -> dict[str, str]:
    home = gemini.gemini_home(tmp / "gemini-home")
    return {"CHUMP_GEMINI_BIN": str(agent_cli("gemini")), "HOME": str(home),
            "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": "gm-scripted-not-a-real-key"}


RIGS = {
    "claude": Rig("claude", anthropic.bash, anthropic.AnthropicServer, _claude_env),
    "codex": Rig("codex", openai_responses.shell, openai_responses.ResponsesServer, _codex_env),
    "opencode": Rig("opencode", chat_completions.bash, chat_completions.ChatServer,
                    _opencode_env),
    "gemini": Rig("gemini", gemini.shell, gemini.GeminiServer, _gemini_env),
}


def ship_plan(rig: Rig, first: list[str] = ()) -> Plan:  # type: ignore[assignment]
    """Extra commands first, then commit the work, open the PR, answer with its number."""
    def plan(gap: str, turn: int) -> Step:
        steps = [*first, f"echo {gap} > {gap}.txt && git add {gap}.txt && "
                         f"git commit -qm 'work on {gap}' && echo committed",
                 "gh pr create --fill"]
        return rig.shell(steps[turn]) if turn < len(steps) else Say("101")
    return plan


def serve(rig: Rig, plan: Plan, started: list[ScriptedServer]) -> tuple[Any, ScriptedServer]:
    model = rig.server(plan)
    server = model.start().__enter__()
    started.append(server)
    return model, server
