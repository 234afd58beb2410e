"""What the engine reports. Front ends subscribe and turn these into output or redraws.

Events are plain frozen dataclasses carrying copies, so a listener on another
thread never sees a record change under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from chump_tui.dispatch_record import Dispatch


@dataclass(frozen=True)
class DispatchChanged:
    """A dispatch was created or changed phase, PR state or outcome."""

    dispatch: Dispatch
    why: Literal["dispatching", "dispatched", "spawn_failed", "pr", "stalled", "killing",
                 "outcome", "reflected", "exited", "restored", "activity",
                 "waiting"]


@dataclass(frozen=True)
class OutputLine:
    """Lines an agent wrote, one event per chunk read (high rate: listeners must be cheap)."""

    key: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class GitHubPolled:
    ok: bool
    error: str | None
    next_poll_in_s: float


@dataclass(frozen=True)
class Notice:
    level: Literal["info", "warning", "error"]
    text: str


@dataclass(frozen=True)
class Attention:
    """Something an operator acts on that is no outcome: an agent went quiet, an attempt or
    the session crossed its budget. ``key`` is '' for the whole session."""

    kind: Literal["quiet", "budget"]
    key: str
    text: str


EngineEvent = DispatchChanged | OutputLine | GitHubPolled | Notice | Attention
