"""Agent harnesses: how each agent CLI is started and which parser reads what it prints.

A harness is a small description (its binary variable, argv, whether it can read the
prompt on stdin, its event format, hints for failures it is known for), so the next
agent CLI is one more entry here, not new branches through the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chump_tui.agent_streams import claude
from chump_tui.agent_streams.decoder import StreamFormat

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


CLAUDE = Harness(
    name="claude", bin_variable="CHUMP_CLAUDE_BIN", default_bin="claude", argv=_claude_argv,
    fmt=StreamFormat("claude", claude.parse, claude.parse_cut), prompt_on_stdin=True,
    hints=(("cannot be used with root/sudo privileges",
            "claude refuses --dangerously-skip-permissions as root; if this machine is a "
            "sandbox, set IS_SANDBOX=1 in chump-tui's environment"),),
)

HARNESSES: dict[str, Harness] = {h.name: h for h in (CLAUDE,)}


def harness_named(name: str) -> Harness | None:
    return HARNESSES.get(name)


def stream_format(name: str) -> StreamFormat | None:
    """The event format of a harness by name ('' or an unknown name: plain text)."""
    harness = HARNESSES.get(name)
    return harness.fmt if harness is not None else None
