"""What crosses the broker for an agent nobody is watching: a summary, not its bytes.

A worker already follows and parses each agent's log as local mode does (``OutputLog``).
With ``--fleet-output summary`` it sends, at most every ``SUMMARY_EVERY_S`` and only when
something changed, what the console shows of the agent: its activity (tool and argument,
turns, tokens, cost, errors, how long ago it last made progress: ages, so no host's clock
reaches the console) and its new lines as shown, at most ``wire.SUMMARY_LINES`` of them
(a note says how many more), every text redacted on the host. The whole log stays there;
a console asks for it while the operator looks at the agent (``wire.WatchRequest``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chump_tui.activity import Activity
from chump_tui.agent_process import OutputLog
from chump_tui.agent_streams.events import Finished
from chump_tui.fleet import wire

SUMMARY_EVERY_S = 1.0  # an unwatched card changes once a second: enough, and under 2 KB/s
SUMMARY_LINE_BYTES = 900  # of new lines per summary: with the activity, under 2 KB a second

_TEXTS = ("session_id", "model", "doing", "fatal_error", "last_retry")
_COUNTS = ("turns", "tokens_in", "tokens_out", "tool_calls", "tool_errors", "events",
           "retries")
_TIMES = (("first_event_at", "first_event_ago"), ("last_event_at", "last_event_ago"),
          ("fatal_at", "fatal_ago"))


def activity_fields(act: Activity, now: float, redact: Callable[[str], str]) -> dict[str, Any]:
    """An activity as a summary says it (texts redacted, times as ages)."""
    fields: dict[str, Any] = {name: redact(getattr(act, name)) for name in _TEXTS
                              if getattr(act, name)}
    fields.update({name: getattr(act, name) for name in _COUNTS})
    if act.cost_usd is not None:
        fields["cost_usd"] = act.cost_usd
    for at, ago in _TIMES:
        value = getattr(act, at)
        if value is not None:
            fields[ago] = round(max(0.0, now - value), 3)
    done = act.finished
    if done is not None:
        fields.update(finished_ok=done.ok, finished_text=redact(done.text),
                      finished_subtype=done.subtype)
        for name, value in (("finished_turns", done.turns),
                            ("finished_cost_usd", done.cost_usd),
                            ("finished_tokens_in", done.tokens_in),
                            ("finished_tokens_out", done.tokens_out)):
            if value is not None:
                fields[name] = value
    return fields


def activity_from(fields: dict[str, Any], now: float) -> Activity:
    """The activity a (checked) summary describes, its ages on this clock."""
    act = Activity()
    for name in _TEXTS:
        setattr(act, name, str(fields.get(name, "")))
    for name in _COUNTS:
        setattr(act, name, int(fields.get(name, 0)))
    act.cost_usd = fields.get("cost_usd")
    for at, ago in _TIMES:
        if ago in fields:
            setattr(act, at, now - float(fields[ago]))
    if "finished_ok" in fields:
        act.finished = Finished(
            ok=bool(fields["finished_ok"]), text=str(fields.get("finished_text", "")),
            subtype=str(fields.get("finished_subtype", "")),
            turns=fields.get("finished_turns"), cost_usd=fields.get("finished_cost_usd"),
            tokens_in=fields.get("finished_tokens_in"),
            tokens_out=fields.get("finished_tokens_out"))
    return act


@dataclass
class _Sent:
    at: float = 0.0  # when its last summary went out
    lines: int = 0  # its OutputLog's lines_seen then
    said: str = ""  # its activity then (ages left out): unchanged is not sent again


class Summaries:
    """A worker's summaries of its agents, one round at a time."""

    def __init__(self, worker: str, redact: Callable[[str], str],
                 clock: Callable[[], float] = time.time) -> None:
        self.worker = worker
        self.redact = redact
        self.clock = clock
        self._sent: dict[str, _Sent] = {}
        self._due: dict[str, _Sent] = {}  # said in a round not stored yet

    def due(self, uid: str, output: OutputLog, final: bool) -> wire.AgentReport | None:
        """Agent ``uid``'s summary if one is due (``final``: its last, before its exit).
        What it says counts as sent only once ``stored`` says the broker has it."""
        now = self.clock()
        sent = self._sent.setdefault(uid, _Sent())
        if not final and now - sent.at < SUMMARY_EVERY_S:
            return None
        fields = activity_fields(output.activity(), now, self.redact)
        said = _said(fields)
        seen = output.lines_seen
        new = seen - sent.lines
        if new <= 0 and said == sent.said and not final:
            return None
        self._due[uid] = _Sent(now, seen, said)
        # Its last carries what a reflection keeps of the whole log (errors, warnings).
        signals = tuple(self.redact(line)[:wire.SUMMARY_LINE_CHARS]
                        for line in output.signal_lines()[-wire.SUMMARY_SIGNALS:]) \
            if final else ()
        return wire.AgentReport(kind="summary", uid=uid, worker=self.worker, host=self.worker,
                                activity=fields, lines=self._lines(output, new),
                                signals=signals)

    def _lines(self, output: OutputLog, new: int) -> tuple[str, ...]:
        """The newest of its new lines, redacted, within the summary's bounds; a note first
        when some were left out (the whole log stays on the host)."""
        if new <= 0:
            return ()
        lines: list[str] = []
        size = 0
        for line in reversed(output.tail(min(new, wire.SUMMARY_LINES))):
            line = self.redact(line)[:wire.SUMMARY_LINE_CHARS]
            if size + len(line) > SUMMARY_LINE_BYTES and lines:
                break
            lines.append(line)
            size += len(line) + 1
        lines.reverse()
        if new > len(lines):
            lines.insert(0, f"[chump-tui] {new - len(lines)} more line(s) on {self.worker}")
        return tuple(lines)

    def stored(self, uids: list[str]) -> None:
        """The broker stored these agents' summaries (a round that failed is said again,
        lines and all, next round)."""
        for uid in uids:
            due = self._due.pop(uid, None)
            if due is not None:
                self._sent[uid] = due

    def forget(self, uid: str) -> None:
        self._sent.pop(uid, None)
        self._due.pop(uid, None)


def _said(fields: dict[str, Any]) -> str:
    """An activity as compared for change (its ages left out: they change every second)."""
    return repr({k: v for k, v in fields.items() if not k.endswith("_ago")})
