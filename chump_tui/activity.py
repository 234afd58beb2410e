"""What one agent is doing now, and its output as a person reads it.

``Activity`` folds the agent's events (``chump_tui.agent_streams.events``) into
what the card shows: the current tool and its argument (``Bash  cargo test``),
``thinking…`` or ``writing``, turns, tokens in and out, the cost once the run
reports it, and when the last event came (the watchdogs read that). ``render``
turns each event into the readable line the output pane shows; never raw JSON.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass, field

from chump_tui.agent_streams.events import (
    AgentError,
    AgentEvent,
    AssistantText,
    Finished,
    MessageUsage,
    PlainLine,
    Retrying,
    SessionStarted,
    StepStarted,
    Thinking,
    ToolCall,
    ToolFinished,
    TurnUsage,
)
from chump_tui.agent_streams.fields import first_line
from chump_tui.log_lines import human_bytes
from chump_tui.numbers import dollars, short_count
from chump_tui.pricing import Cost, cost_of

WRAP = 110

RUN_MARK = "[chump-tui] ── run "
"""Starts the line the engine writes into an attempt's log before its next run (a follow-up,
a CI repair): re-reading the log, the activity starts over there, as it did live."""


def run_line(run: int, what: str) -> str:
    return f"{RUN_MARK}{run}: {first_line(what, 120)} ──"

_FROM_THE_MODEL = (AssistantText, Thinking, ToolCall, ToolFinished, MessageUsage, TurnUsage,
                   Finished, PlainLine)


@dataclass
class Activity:
    session_id: str = ""
    model: str = ""
    doing: str = ""  # "Bash  cargo test -p core", "thinking…", "writing"
    turns: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    tool_calls: int = 0
    tool_errors: int = 0
    events: int = 0
    # The first-output watchdog waits for the model (or a plain agent's first line);
    # housekeeping such as claude's init or codex's thread.started does not count.
    first_event_at: float | None = None
    last_event_at: float | None = None  # the last output that is progress
    finished: Finished | None = None
    fatal_error: str = ""  # a failed turn or error event: the outcome's reason
    fatal_at: float | None = None  # when it said so
    retries: int = 0  # the harness retried its model call (since the last progress)
    last_retry: str = ""
    _by_message: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _by_message_in: int = field(default=0, repr=False)  # the sums over _by_message
    _by_message_out: int = field(default=0, repr=False)
    _base_in: int = field(default=0, repr=False)  # totals from TurnUsage (harnesses without ids)
    _base_out: int = field(default=0, repr=False)
    _tools: dict[str, str] = field(default_factory=dict, repr=False)  # running tool id -> name

    def apply(self, event: AgentEvent, now: float) -> None:
        if not (isinstance(event, Retrying)
                or (isinstance(event, PlainLine) and event.beside_events)):
            self.events += 1
            self.retries = 0
            if self.first_event_at is None and isinstance(event, _FROM_THE_MODEL):
                self.first_event_at = now
            self.last_event_at = now
        if isinstance(event, SessionStarted):
            self.session_id = event.session_id or self.session_id
            self.model = event.model or self.model
            self.doing = "starting"
        elif isinstance(event, StepStarted):
            self.session_id = event.session_id or self.session_id
            self.doing = "thinking…"
        elif isinstance(event, AssistantText):
            self.doing = "writing"
        elif isinstance(event, Thinking):
            self.doing = "thinking…"
        elif isinstance(event, ToolCall):
            self.tool_calls += 1
            self._tools[event.tool_id] = event.name
            self.doing = f"{event.name}  {event.arg}".rstrip()
        elif isinstance(event, ToolFinished):
            self._tools.pop(event.tool_id, None)
            self.tool_errors += not event.ok
            self.doing = "thinking…"
        elif isinstance(event, MessageUsage):
            # A message's usage is restated as it grows: replace its share of the sums.
            was_in, was_out = self._by_message.get(event.message_id, (0, 0))
            self._by_message[event.message_id] = (event.tokens_in, event.tokens_out)
            self._by_message_in += event.tokens_in - was_in
            self._by_message_out += event.tokens_out - was_out
            self._sum_tokens()
            self.turns = max(self.turns, len(self._by_message))
        elif isinstance(event, TurnUsage):
            self._base_in += event.tokens_in
            self._base_out += event.tokens_out
            self.turns += 1
            if event.cost_usd is not None:
                self.cost_usd = (self.cost_usd or 0.0) + event.cost_usd
            self._sum_tokens()
        elif isinstance(event, Finished):
            self._finish(event, now)
        elif isinstance(event, AgentError):
            self.doing = f"error: {first_line(event.message, 80)}"
            if event.fatal:
                self.fatal_error = first_line(event.message, 300)
                self.fatal_at = now
        elif isinstance(event, Retrying):
            self.retries += 1
            self.last_retry = first_line(event.message, 80)
            self.doing = f"waiting on the model API ({self.last_retry})"

    def next_run(self) -> Activity:
        """The activity of the conversation's next run: the same session and model, its own
        numbers (the row adds the runs)."""
        return Activity(session_id=self.session_id, model=self.model, doing="resuming")

    def _sum_tokens(self) -> None:
        self.tokens_in = self._base_in + self._by_message_in
        self.tokens_out = self._base_out + self._by_message_out

    def _finish(self, event: Finished, now: float) -> None:
        self.finished = event
        if event.turns is not None:
            self.turns = event.turns
        if event.cost_usd is not None:
            self.cost_usd = event.cost_usd
        if event.tokens_in is not None:  # the run's own totals win over our running sum
            self.tokens_in = event.tokens_in
        if event.tokens_out is not None:
            self.tokens_out = event.tokens_out
        self.doing = "done" if event.ok else "failed"
        if not event.ok:
            self.fatal_error = first_line(event.text or event.subtype or "failed", 300)
            self.fatal_at = now

    def forget_details(self) -> None:
        """Drop what only a running agent needs (per-message usage, running tools)."""
        self._base_in, self._base_out = self.tokens_in, self.tokens_out
        self._by_message.clear()
        self._by_message_in = self._by_message_out = 0
        self._tools.clear()

    def copy(self) -> Activity:
        """A snapshot to show; its sums are folded into the base, as forget_details does."""
        return dataclasses.replace(
            self, _by_message={}, _tools={}, _by_message_in=0, _by_message_out=0,
            _base_in=self._base_in + self._by_message_in,
            _base_out=self._base_out + self._by_message_out)

    def counters(self) -> str:
        """``3 turns · in 12.3k out 1.2k · $0.0412 · 2 tool errors``: the cost where the
        harness says it, else an estimate marked ``≈`` where the model's price is known."""
        return counters_text(self.turns, self.tokens_in, self.tokens_out,
                             cost_of(self.cost_usd, self.model, self.tokens_in,
                                     self.tokens_out), self.tool_errors)


def counters_text(turns: int | None, tokens_in: int | None, tokens_out: int | None,
                  cost: Cost, tool_errors: int | None) -> str:
    parts = [f"{turns or 0} turn{'s' if turns != 1 else ''}"]
    if tokens_in or tokens_out:
        parts.append(f"in {short_count(tokens_in or 0)} out {short_count(tokens_out or 0)}")
    if cost.usd is not None:
        parts.append(cost.text())
    if tool_errors:
        parts.append(f"{tool_errors} tool error{'s' if tool_errors != 1 else ''}")
    return " · ".join(parts)


ERROR_LINES = 6
"""Lines of a failed tool's output shown under it (t on the monitor shows all of it)."""


def error_detail(event: ToolFinished) -> list[str]:
    """What a failed tool said, after its first line (already on the line above)."""
    said = [ln for ln in event.text.splitlines() if ln.strip()]
    if event.preview and said:
        said = said[1:]
    shown = [f"      {first_line(ln, 200)}" for ln in said[:ERROR_LINES]]
    if len(said) > ERROR_LINES:
        shown.append(f"      … {len(said) - ERROR_LINES} more line(s) (t: tool results)")
    return shown


def render(event: AgentEvent) -> list[str]:
    """The lines the output pane shows for one event (none for pure bookkeeping)."""
    if isinstance(event, PlainLine):
        return [event.text]
    if isinstance(event, SessionStarted):
        return [f"● session {event.session_id[:8] or '?'} · model {event.model or '?'}"]
    if isinstance(event, AssistantText):
        lines: list[str] = []
        for paragraph in event.text.strip().splitlines():
            lines += textwrap.wrap(paragraph, WRAP, subsequent_indent="  ") or [""]
        return [f"» {ln}" if i == 0 else f"  {ln}" for i, ln in enumerate(lines)]
    if isinstance(event, ToolCall):
        return [f"→ {event.name}  {event.arg}".rstrip()]
    if isinstance(event, ToolFinished):
        name = f" {event.name}" if event.name else ""
        if event.ok:
            return [f"  ✓{name} {human_bytes(event.size)}  {event.preview}".rstrip()]
        return [f"  ✗{name} tool error, {human_bytes(event.size)}  {event.preview}".rstrip(),
                *error_detail(event)]
    if isinstance(event, Finished):
        detail = event.subtype if event.subtype not in ("", "success") else ""
        word = "done" if event.ok else ("FAILED" + (f" ({detail})" if detail else ""))
        facts = []
        if event.turns is not None:
            facts.append(f"{event.turns} turns")
        if event.cost_usd is not None:
            facts.append(dollars(event.cost_usd))
        if event.duration_ms is not None:
            facts.append(f"{event.duration_ms / 1000:.0f}s")
        text = first_line(event.text, 300)
        return [f"■ {word}" + (f" · {' · '.join(facts)}" if facts else "")
                + (f" — {text}" if text else "")]
    if isinstance(event, AgentError):
        return [f"✗ ERROR: {event.message}"]
    if isinstance(event, Retrying):
        return [f"… {event.message}"]
    return []
