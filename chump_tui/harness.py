"""Agent harnesses: how each agent CLI is started and which parser reads what it prints.

A harness is a small description (its binary variable, argv, whether it can read the
prompt on stdin, its event format, hints for failures it is known for), so the next
agent CLI is one more entry here, not new branches through the engine.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chump_tui.agent_streams import claude, codex, gemini, opencode
from chump_tui.agent_streams.decoder import StreamFormat

CLAUDE_WRAPPERS = (Path("scripts/claude-retry.sh"), Path("scripts/coord/claude-retry.sh"))

# Linux refuses one argv element over 128 KiB (MAX_ARG_STRLEN); macOS caps the whole
# argv and environment at 1 MiB. A prompt above this goes on stdin where the harness
# reads it from there, and is refused before anything is created where it does not.
MAX_PROMPT_ARG_BYTES = 100 * 1024


@dataclass(frozen=True)
class Harness:
    name: str
    bin_variable: str  # e.g. CHUMP_CLAUDE_BIN
    default_bin: str
    argv: Callable[[str, str | None], list[str]]  # (binary, prompt or None: on stdin)
    fmt: StreamFormat | None
    # (binary, session id, message or None: on stdin): the conversation resumed with a
    # new message, non-interactively, in the same event format (a follow-up, a CI repair)
    resume_argv: Callable[[str, str, str | None], list[str]] | None = None
    prompt_on_stdin: bool = False
    # (text the CLI prints when it fails this way, what the operator should do)
    hints: tuple[tuple[str, str], ...] = field(default=())

    def hint_for(self, lines: list[str]) -> str | None:
        for line in reversed(lines):
            for needle, hint in self.hints:
                if needle in line:
                    return hint
        return None


def _claude_argv(binary: str, prompt: str | None) -> list[str]:
    head = [binary, "-p"] if prompt is None else [binary, "-p", prompt]
    return [*head, "--dangerously-skip-permissions", "--output-format", "stream-json",
            "--verbose"]


def _claude_resume(binary: str, session: str, prompt: str | None) -> list[str]:
    argv = _claude_argv(binary, prompt)
    return [*argv[:2], "--resume", session, *argv[2:]]


CLAUDE = Harness(
    name="claude", bin_variable="CHUMP_CLAUDE_BIN", default_bin="claude", argv=_claude_argv,
    fmt=StreamFormat("claude", claude.parse, claude.parse_cut), prompt_on_stdin=True,
    resume_argv=_claude_resume,
    hints=(("cannot be used with root/sudo privileges",
            "claude refuses --dangerously-skip-permissions as root; if this machine is a "
            "sandbox, set IS_SANDBOX=1 in chump-tui's environment"),),
)

def _codex_argv(binary: str, prompt: str | None) -> list[str]:
    # Without codex's sandbox, as claude runs without permission prompts (README: how to
    # choose `-s workspace-write` instead). "-" reads the prompt on stdin.
    return [binary, "exec", "--json", "--dangerously-bypass-approvals-and-sandbox",
            "-" if prompt is None else prompt]


def _codex_resume(binary: str, session: str, prompt: str | None) -> list[str]:
    return [binary, "exec", "resume", "--json", "--dangerously-bypass-approvals-and-sandbox",
            session, "-" if prompt is None else prompt]


def _opencode_argv(binary: str, prompt: str | None) -> list[str]:
    return [binary, "run", "--format", "json", "--auto", prompt or ""]


def _opencode_resume(binary: str, session: str, prompt: str | None) -> list[str]:
    return [binary, "run", "--format", "json", "--auto", "--session", session, prompt or ""]


def _gemini_argv(binary: str, prompt: str | None) -> list[str]:
    # --skip-trust: in a directory it does not trust, gemini exits 55 and turns --yolo off.
    return [binary, "-p", prompt or "", "--output-format", "stream-json", "--yolo",
            "--skip-trust"]


def _gemini_resume(binary: str, session: str, prompt: str | None) -> list[str]:
    return [*_gemini_argv(binary, prompt), "--resume", session]


CODEX = Harness(
    name="codex", bin_variable="CHUMP_CODEX_BIN", default_bin="codex", argv=_codex_argv,
    fmt=StreamFormat("codex", codex.parse, codex.parse_cut), prompt_on_stdin=True,
    resume_argv=_codex_resume,
)
OPENCODE = Harness(
    name="opencode", bin_variable="CHUMP_OPENCODE_BIN", default_bin="opencode",
    argv=_opencode_argv, fmt=StreamFormat("opencode", opencode.parse, opencode.parse_cut),
    resume_argv=_opencode_resume,
)
GEMINI = Harness(
    name="gemini", bin_variable="CHUMP_GEMINI_BIN", default_bin="gemini", argv=_gemini_argv,
    fmt=StreamFormat("gemini", gemini.parse, gemini.parse_cut), resume_argv=_gemini_resume,
    hints=(("Invalid auth method selected",
            "gemini has no auth method: set GEMINI_API_KEY and select API-key auth in "
            "~/.gemini/settings.json"),),
)

HARNESSES: dict[str, Harness] = {h.name: h for h in (CLAUDE, CODEX, OPENCODE, GEMINI)}
DEFAULT_HARNESS = "claude"


def resolve_harness(name: str) -> Harness:
    """The harness called ``name``; a ValueError naming the choices otherwise."""
    harness = HARNESSES.get(name.strip().lower())
    if harness is None:
        raise ValueError(f"unknown harness {name!r} (choose one of {', '.join(HARNESSES)})")
    return harness


def resolve_bin(harness: Harness, repo_root: Path, environ: Mapping[str, str]) -> str:
    """The binary: the harness's variable, else (claude) the repo's wrapper, else its name."""
    explicit = environ.get(harness.bin_variable)
    if explicit:
        return explicit
    if harness is CLAUDE:
        for wrapper in CLAUDE_WRAPPERS:
            if (repo_root / wrapper).is_file():
                return str(repo_root / wrapper)
    return harness.default_bin


def missing_bin(harness: Harness, repo_root: Path, environ: Mapping[str, str]) -> str | None:
    """A one-line complaint when the harness's binary cannot be found, else None."""
    binary = resolve_bin(harness, repo_root, environ)
    found = shutil.which(binary, path=environ.get("PATH")) if os.sep not in binary else (
        binary if Path(binary).exists() else None)
    if found:
        return None
    return (f"{harness.name}: {binary} not found; set {harness.bin_variable} or put "
            f"{harness.default_bin} on PATH")


_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def usable_session_id(session: str) -> bool:
    """Whether a session id the agent printed may go into a resume argv: an id that starts
    with '-' would be read as a flag, so only plain ids (uuids, ``ses_…``) pass."""
    return _SESSION_ID.fullmatch(session) is not None


def harness_named(name: str) -> Harness | None:
    return HARNESSES.get(name)


def stream_format(name: str) -> StreamFormat | None:
    """The event format of a harness by name ('' or an unknown name: plain text)."""
    harness = HARNESSES.get(name)
    return harness.fmt if harness is not None else None
