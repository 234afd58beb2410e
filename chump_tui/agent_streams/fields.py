"""Reading fields of untrusted JSON events without trusting their shapes or their numbers."""

from __future__ import annotations

import json
import re
from typing import Any

from chump_tui import numbers
from chump_tui.agent_streams.events import TOOL_TEXT_CHARS

PREVIEW_CHARS = 160

# The argument a person wants to see first, by tool name (lowercase), across harnesses.
_KEY_ARGS = {
    "bash": ("command", "cmd"), "shell": ("command", "cmd"), "exec_command": ("cmd", "command"),
    "run_shell_command": ("command",), "read": ("file_path", "filePath", "path"),
    "read_file": ("file_path", "absolute_path", "path"), "edit": ("file_path", "filePath", "path"),
    "multiedit": ("file_path",), "write": ("file_path", "filePath", "path"),
    "write_file": ("file_path", "path"), "replace": ("file_path", "path"),
    "notebookedit": ("notebook_path",), "glob": ("pattern",), "grep": ("pattern",),
    "search_file_content": ("pattern",), "list": ("path",), "ls": ("path", "dir_path"),
    "list_directory": ("path", "dir_path"), "webfetch": ("url",), "web_fetch": ("url", "prompt"),
    "websearch": ("query",), "google_web_search": ("query",), "task": ("description",),
    "agent": ("description",), "todowrite": ("todos",), "patch": ("patchText",),
    "apply_patch": ("input",),
}


# One name per kind of tool on every card, whichever harness called it.
_TOOL_LABELS = {
    "bash": "Bash", "shell": "Bash", "run_shell_command": "Bash", "exec_command": "Bash",
    "read": "Read", "read_file": "Read", "write": "Write", "write_file": "Write",
    "edit": "Edit", "replace": "Edit", "multiedit": "Edit", "patch": "Edit",
    "apply_patch": "Edit", "glob": "Glob", "grep": "Grep", "grep_search": "Grep",
    "search_file_content": "Grep", "list": "List", "ls": "List", "list_directory": "List",
    "webfetch": "WebFetch", "web_fetch": "WebFetch", "websearch": "WebSearch",
    "google_web_search": "WebSearch", "todowrite": "TodoWrite",
}


def tool_label(name: str) -> str:
    return _TOOL_LABELS.get(name.lower(), name)


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_count(value: Any) -> int | None:
    """Tokens, turns, calls, milliseconds: a usable count or None (``chump_tui.numbers``)."""
    return numbers.count(value)


def as_cost(value: Any) -> float | None:
    """Dollars: finite and not negative, or None."""
    return numbers.cost(value)


def as_exit_code(value: Any) -> int | None:
    return numbers.exit_code(value)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def first_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    stripped = text.strip()
    line = stripped.split("\n", 1)[0].strip() if stripped else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def key_arg(tool: str, args: Any) -> str:
    """The argument that says what a tool call does, as one short line."""
    if isinstance(args, str):  # some harnesses send arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            return first_line(args)
    fields = as_dict(args)
    name = tool.lower()
    if name == "todowrite":
        return f"{len(as_list(fields.get('todos')))} todos"
    for key in _KEY_ARGS.get(name, ()):
        value = fields.get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if isinstance(value, str) and value:
            return first_line(value)
    for value in fields.values():  # an unknown tool: its first string argument
        if isinstance(value, str) and value:
            return first_line(value)
    return ""


def text_size(value: Any) -> int:
    """Bytes of a tool result however it is shaped (a string or a list of blocks)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="replace"))
    if isinstance(value, list):
        return sum(text_size(as_dict(v).get("text", "")) for v in value)
    return 0


def text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(as_str(as_dict(v).get("text")) for v in value)
    return ""


def kept_text(text: str) -> str:
    """A tool result's text as kept with its event: bounded."""
    return text if len(text) <= TOOL_TEXT_CHARS else text[:TOOL_TEXT_CHARS]


_HEAD_FIELD = re.compile(r'"(type|tool_use_id|name|id)"\s*:\s*"([^"\\]{0,200})"')


def head_fields(head: str) -> dict[str, str]:
    """First occurrences of a few string fields in the head of a line too long to parse."""
    found: dict[str, str] = {}
    for match in _HEAD_FIELD.finditer(head):
        found.setdefault(match.group(1), match.group(2))
    return found
