"""What an agent did, in one vocabulary for every harness.

Each harness's parser turns its own JSON events into these; the activity model
(``chump_tui.activity``) and the output pane read only these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: str
    model: str


@dataclass(frozen=True, slots=True)
class StepStarted:
    """The model is working on a step (a harness that reports tools only when done)."""

    session_id: str = ""  # a harness that names its session on every step (opencode)


@dataclass(frozen=True, slots=True)
class AssistantText:
    text: str


@dataclass(frozen=True, slots=True)
class Thinking:
    pass


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool_id: str
    name: str
    arg: str  # the key argument: the command, the file, the pattern


@dataclass(frozen=True, slots=True)
class ToolFinished:
    tool_id: str
    ok: bool
    size: int  # bytes of output
    preview: str  # its first line
    name: str = ""  # when the harness says (the call may have been reported with it)
    text: str = ""  # the output, at most TOOL_TEXT_CHARS ('' when only its head was kept)


TOOL_TEXT_CHARS = 64 * 1024
"""What is kept of one tool result's text while it is shown (the log file has it all)."""


@dataclass(frozen=True, slots=True)
class MessageUsage:
    """Usage of one model message; a later report for the same message replaces it."""

    message_id: str
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """Usage of one finished turn or step, added to the totals."""

    tokens_in: int
    tokens_out: int
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    ok: bool
    text: str
    subtype: str = ""
    turns: int | None = None
    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AgentError:
    message: str
    fatal: bool = False  # the turn or run failed (its message becomes the reason)


@dataclass(frozen=True, slots=True)
class Retrying:
    """The harness retries its model call: output, but no progress (watchdogs ignore it)."""

    message: str


@dataclass(frozen=True, slots=True)
class PlainLine:
    text: str
    beside_events: bool = False  # printed beside a harness's event stream (stderr noise):
    # shown, but not progress, so a CLI that only complains is still caught by the watchdogs


AgentEvent = (SessionStarted | StepStarted | AssistantText | Thinking | ToolCall | ToolFinished
              | MessageUsage | TurnUsage | Finished | AgentError | Retrying | PlainLine)
