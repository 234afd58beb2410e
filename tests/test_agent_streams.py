"""The event parser: claude's stream-json into activity and readable lines; tolerant of garbage,
of streams cut anywhere, of lines too long to keep."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from chump_tui.activity import Activity, render
from chump_tui.agent_streams.decoder import decode
from chump_tui.agent_streams.events import (
    AssistantText,
    Finished,
    PlainLine,
    SessionStarted,
    ToolCall,
    ToolFinished,
)
from chump_tui.harness import CLAUDE
from chump_tui.log_lines import LineSplitter, Redactor

FMT = CLAUDE.fmt

# A stream as the real CLI writes it (2.1.x, recorded against the scripted server).
STREAM = [
    {"type": "system", "subtype": "init", "cwd": "/w", "session_id": "8378261a-6798",
     "tools": ["Bash"], "model": "claude-scripted-1"},
    {"type": "assistant", "message": {"id": "msg_1", "role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "Bash",
         "input": {"command": "cargo test -p core", "description": "tests"}}],
        "usage": {"input_tokens": 300, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 100}}, "session_id": "8378261a-6798"},
    {"type": "user", "message": {"role": "user", "content": [
        {"tool_use_id": "toolu_1", "type": "tool_result", "content": "test result: ok. 12 passed",
         "is_error": False}]}, "tool_use_result": {"stdout": "x"}},
    {"type": "assistant", "message": {"id": "msg_2", "content": [
        {"type": "tool_use", "id": "toolu_2", "name": "Edit",
         "input": {"file_path": "src/x.rs", "old_string": "a", "new_string": "b"}}],
        "usage": {"input_tokens": 500, "output_tokens": 1}}},
    {"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
            {"type": "text", "text": "String not found"}], "is_error": True}]}},
    {"type": "assistant", "message": {"id": "msg_3", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "PR 42 opened"}],
        "usage": {"input_tokens": 700, "output_tokens": 1}}},
    {"type": "some_future_event", "payload": [1, 2, 3]},
    {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 2547,
     "num_turns": 3, "result": "PR 42 opened", "total_cost_usd": 0.009,
     "usage": {"input_tokens": 1500, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": 60}},
]
STREAM_BYTES = b"".join(json.dumps(e).encode() + b"\n" for e in STREAM)


def feed(data: bytes, cuts: list[int] = ()) -> list:  # type: ignore[assignment,type-arg]
    splitter = LineSplitter(Redactor([]))
    lines = []
    start = 0
    for cut in sorted(c for c in cuts if 0 < c < len(data)):
        lines += splitter.feed(data[start:cut])
        start = cut
    lines += splitter.feed(data[start:]) + splitter.flush()
    return decode(lines, FMT)


def fold(events: list) -> Activity:  # type: ignore[type-arg]
    act = Activity()
    for i, event in enumerate(events):
        act.apply(event, float(i))
    return act


def test_a_real_stream_becomes_activity_and_readable_lines() -> None:
    events = feed(STREAM_BYTES)
    assert isinstance(events[0], SessionStarted) and events[0].model == "claude-scripted-1"
    assert ToolCall("toolu_1", "Bash", "cargo test -p core") in events
    assert ToolCall("toolu_2", "Edit", "src/x.rs") in events
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [(f.ok, f.preview) for f in finished] == [
        (True, "test result: ok. 12 passed"), (False, "String not found")]
    assert AssistantText("PR 42 opened") in events
    act = fold(events)
    assert act.turns == 3 and act.tokens_in == 1500 and act.tokens_out == 60
    assert act.cost_usd == 0.009 and act.tool_errors == 1 and act.doing == "done"
    lines = [line for e in events for line in render(e)]
    assert "→ Bash  cargo test -p core" in lines
    assert any(ln.startswith("  ✗ tool error") for ln in lines)
    assert lines[-1].startswith("■ done · 3 turns · $0.0090 · 3s — PR 42 opened")
    assert not any(ln.lstrip().startswith("{") for ln in lines)  # never raw JSON


def test_while_a_tool_runs_the_activity_says_so() -> None:
    act = fold(feed(b"".join(json.dumps(e).encode() + b"\n" for e in STREAM[:2])))
    assert act.doing == "Bash  cargo test -p core"
    assert act.turns == 1 and act.tokens_in == 400


def test_usage_restated_for_a_message_replaces_its_share_and_copies_keep_the_sums() -> None:
    from chump_tui.agent_streams.events import MessageUsage

    act = Activity()
    for message_id, tokens_in, tokens_out in [("m1", 100, 5), ("m2", 200, 7), ("m1", 150, 9)]:
        act.apply(MessageUsage(message_id, tokens_in, tokens_out), 0.0)
    assert (act.turns, act.tokens_in, act.tokens_out) == (2, 350, 16)
    shown = act.copy()
    shown.apply(MessageUsage("m3", 10, 1), 0.0)
    assert (shown.tokens_in, shown.tokens_out) == (360, 17)
    act.forget_details()
    act.apply(MessageUsage("m4", 50, 2), 0.0)
    assert (act.tokens_in, act.tokens_out) == (400, 18)


def test_an_error_result_is_the_agents_error() -> None:
    result = {"type": "result", "subtype": "success", "is_error": True, "num_turns": 2,
              "result": "API Error: 400 scripted: the model refused", "total_cost_usd": 0.002}
    act = fold(feed(json.dumps(result).encode() + b"\n"))
    assert act.finished is not None and not act.finished.ok
    assert act.fatal_error == "API Error: 400 scripted: the model refused"


def test_plain_text_and_garbage_are_plain_lines() -> None:
    data = b'not json\n{"broken": \n[1,2]\n{"no_type": 1}\n\xff\xfe\n'
    events = feed(data)
    assert all(isinstance(e, PlainLine) and e.beside_events for e in events)
    assert [e.text for e in events][:4] == ["not json", '{"broken": ', "[1,2]", '{"no_type": 1}']
    assert fold(events).first_event_at is None  # stderr noise is no sign of the model


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    events = feed(data, cuts)
    act = fold(events)
    progress = [e for e in events if not (isinstance(e, PlainLine) and e.beside_events)]
    assert act.events == len(progress)
    for event in events:
        render(event)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(STREAM_BYTES)), max_size=12), st.integers(0, len(STREAM_BYTES)))
def test_a_stream_cut_anywhere_gives_the_same_events_up_to_the_cut(cuts: list[int],
                                                                    end: int) -> None:
    """Chunk boundaries never change what is parsed; a stream that stops mid-line changes
    nothing before the cut, and its last piece is read as a line of its own (an event
    when it happens to be whole JSON, else plain text)."""
    whole = feed(STREAM_BYTES)
    assert feed(STREAM_BYTES, cuts) == whole
    prefix = STREAM_BYTES[:end]
    complete = prefix[: prefix.rfind(b"\n") + 1]
    rest = prefix[len(complete):]
    assert feed(prefix, cuts) == feed(complete) + feed(rest)
    if rest and not rest.rstrip().endswith(b"}"):
        assert all(isinstance(e, PlainLine) for e in feed(rest))


def test_a_twenty_megabyte_tool_result_is_one_bounded_event() -> None:
    import tracemalloc

    head = json.dumps(STREAM[2])[:-4].encode()  # cut inside the last object
    big = (b'{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_9",'
           b'"type":"tool_result","content":"')
    splitter = LineSplitter(Redactor([]))
    tracemalloc.start()
    try:
        lines = splitter.feed(big)
        for _ in range(20):
            lines += splitter.feed(b"z" * (1024 * 1024))
        lines += splitter.feed(b'","is_error":false}]}}\n' + head + b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events = decode(lines, FMT)
    assert isinstance(events[0], ToolFinished) and events[0].tool_id == "toolu_9"
    assert events[0].ok and events[0].size > 20 * 1024 * 1024
    assert peak < 8 * 1024 * 1024
    assert render(events[0])[0].startswith("  ✓ 20.0 MB")


def test_unknown_and_future_events_are_ignored() -> None:
    assert feed(b'{"type":"stream_event","event":{}}\n{"type":"system","subtype":"hook"}\n') == []


def test_finished_is_final_and_counts_win() -> None:
    act = fold([Finished(ok=True, text="x", turns=7, cost_usd=1.5, tokens_in=10,
                         tokens_out=2)])
    assert (act.turns, act.cost_usd, act.counters()) == (7, 1.5, "7 turns · in 10 out 2 · $1.50")
