"""``--fleet-output summary``: hosts send what the console shows, not every byte, on a real
nats-server with real workers and a stand-in claude that speaks stream-json."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chump_tui.fleet import wire
from chump_tui.fleet.summaries import Summaries, activity_fields, activity_from
from tests.conftest import HELPERS, wait_for
from tests.fleet_rig import end_workers_and_agents, nats_server, origin_with_clones, start_worker
from tests.test_fleet import console, fleet_env, fleet_gaps


@pytest.fixture(autouse=True)
def no_worker_or_agent_outlives_its_test() -> Iterator[None]:
    yield
    end_workers_and_agents()


def claude_env(tmp_path: Path, mode: str = "ship") -> dict[str, str]:
    return {**fleet_env(tmp_path), "CHUMP_CLAUDE_BIN": str(HELPERS / "fake_claude.py"),
            "FAKE_CLAUDE_MODE": mode}


def test_a_summary_round_trips_and_hostile_values_are_refused() -> None:
    from chump_tui.activity import Activity
    from chump_tui.agent_process import OutputLog

    out = OutputLog(clock=lambda: 1000.0)
    act = Activity(session_id="s-1", model="claude-x", doing="Bash  cargo test", turns=3,
                   tokens_in=1200, tokens_out=80, cost_usd=0.25, first_event_at=990.0,
                   last_event_at=999.0)
    fields = activity_fields(act, 1000.0, lambda t: t.replace("cargo", "***"))
    assert fields["doing"] == "Bash  *** test" and fields["last_event_ago"] == 1.0
    report = wire.AgentReport(kind="summary", uid="u", worker="w1", host="w1",
                              activity=fields, lines=("→ Bash  cargo test",))
    back = wire.decode(wire.encode(report))
    assert isinstance(back, wire.AgentReport) and back.lines == report.lines
    again = activity_from(back.activity or {}, 5000.0)
    assert (again.turns, again.tokens_in, again.cost_usd) == (3, 1200, 0.25)
    assert again.last_event_at == 4999.0  # ages: the host's clock never reaches us
    out.apply_summary(again, list(back.lines))
    assert out.activity().doing == "Bash  *** test" and out.tail() == ["→ Bash  cargo test"]
    for bad in ({"turns": -1}, {"turns": 10 ** 401}, {"cost_usd": float("nan")},
                {"last_event_ago": -5}, {"doing": 7}, {"finished_ok": "yes"}):
        hostile = json.loads(wire.encode(report))
        hostile["activity"] = {**fields, **bad}
        with pytest.raises(wire.WireError):
            wire.decode(json.dumps(hostile).encode())
    too_many = json.loads(wire.encode(report))
    too_many["lines"] = ["x"] * (wire.SUMMARY_LINES + 2)
    with pytest.raises(wire.WireError):
        wire.decode(json.dumps(too_many).encode())


def test_summaries_are_coalesced_bounded_and_only_sent_on_change() -> None:
    from chump_tui.agent_process import OutputLog

    now = [100.0]
    out = OutputLog(clock=lambda: now[0])
    summaries = Summaries("w1", lambda t: t, clock=lambda: now[0])
    out.add_many([f"line {i} " + "x" * 60 for i in range(500)])
    first = summaries.due("u", out, final=False)
    assert first is not None and first.lines[0] == "[chump-tui] 488 more line(s) on w1"
    summaries.stored(["u"])
    assert sum(len(line) for line in first.lines) < 1100  # bounded, the newest kept
    assert first.lines[-1].startswith("line 499")
    out.add("line 500")
    assert summaries.due("u", out, final=False) is None  # within a second: coalesced
    now[0] += 1.1
    second = summaries.due("u", out, final=False)
    assert second is not None and second.lines == ("line 500",)
    summaries.stored(["u"])
    now[0] += 1.1
    assert summaries.due("u", out, final=False) is None  # nothing changed
    out.add("line 501")
    now[0] += 1.1
    lost = summaries.due("u", out, final=False)  # a round the broker did not store...
    assert lost is not None and lost.lines == ("line 501",)
    now[0] += 1.1
    again = summaries.due("u", out, final=False)  # ...is said again, lines and all
    assert again is not None and again.lines == ("line 501",)
    summaries.stored(["u"])
    now[0] += 1.1
    assert summaries.due("u", out, final=False) is None
    last = summaries.due("u", out, final=True)
    assert last is not None and last.lines == ()  # the last one, whatever changed


def test_the_last_summary_carries_what_the_reflection_keeps_of_the_whole_log() -> None:
    from chump_tui.activity import Activity
    from chump_tui.agent_process import OutputLog

    host = OutputLog(clock=lambda: 100.0)
    host.add_many(["error: linker failed TOKEN=abc", *[f"ok {i}" for i in range(300)],
                   "warning: unused import"])
    summaries = Summaries("w1", lambda t: t.replace("abc", "***"), clock=lambda: 100.0)
    running = summaries.due("u", host, final=False)
    assert running is not None and running.signals == ()  # only the last one carries them
    host.add("ok 301")
    last = summaries.due("u", host, final=True)
    assert last is not None and last.signals == ("error: linker failed TOKEN=***",
                                                 "warning: unused import")
    back = wire.decode(wire.encode(last))
    assert isinstance(back, wire.AgentReport) and back.signals == last.signals
    console = OutputLog()
    console.apply_summary(Activity(), ["ok 299"])  # the summaries carried none of them
    assert console.signal_lines() == []
    console.apply_summary(Activity(), list(back.lines),
                          [*back.signals, "not a signal line: dropped"])
    assert console.signal_lines() == list(last.signals)
    hostile = json.loads(wire.encode(last))
    hostile["signals"] = ["error"] * (wire.SUMMARY_SIGNALS + 1)
    with pytest.raises(wire.WireError):
        wire.decode(json.dumps(hostile).encode())
    # Empty fields are not sent (a thousand agents' summaries a second), and still read.
    exited = wire.encode(wire.AgentReport(kind="exited", uid="u", worker="w1", host="w1",
                                          code=0))
    assert b"null" not in exited and b'"code":0' in exited
    again = wire.decode(exited)
    assert isinstance(again, wire.AgentReport) and again.code == 0 and again.pid is None


def test_hosts_send_summaries_not_every_byte(tmp_path: Path) -> None:
    """Four stand-in claudes on one worker, the console asking for summaries: every gap
    ships with its turns and cost, and what crossed the broker for the agents is their
    summaries and exits only (no byte of their logs: nobody watched them in plain mode)."""
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(4)})
    env = claude_env(tmp_path)
    with nats_server(tmp_path) as server:
        broker = server.client()
        seen: list[tuple[str, int]] = []  # (kind, bytes) of every report on the stream

        def on_reports(subject: str, data: bytes, headers: Any) -> None:
            for report in wire.decode_reports(data):
                seen.append((report.kind, len(data)))

        key = wire.repo_key(str(repos["origin"]))
        broker.follow_stream(wire.agents_subject(key, "*"), wire.AGENTS_STREAM, on_reports,
                             None)
        w1 = start_worker(server.url, repos["w1"], "w1", env, 4)
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3",
                      "--max-parallel", "4", "--fleet-output", "summary")
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, out + err
        assert "shipped=4  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out, out
        agents = out.split("=== agents ===")[1]
        assert agents.count("2 turns") == 4, agents  # each agent's, from its summaries
        assert re.search(r"cost=\$0\.0400", agents), agents
        wait_for(lambda: sum(kind == "exited" for kind, _ in seen) == 4, 10, "the exits")
        kinds = {kind for kind, _ in seen}
        assert "summary" in kinds and "output" not in kinds, kinds
        logs = list((repos["console"] / "sessions" / "chump-tui" / "logs").glob("*.log"))
        assert not any('"type":"result"' in p.read_text().replace(" ", "")
                       for p in logs)  # the whole log stayed on w1
        on_w1 = list((repos["w1"] / "sessions" / "chump-tui-worker" / "logs").glob("*.log"))
        assert len(on_w1) == 4 and all('"type":"result"' in p.read_text().replace(" ", "")
                                       for p in on_w1)
        broker.close()
        w1.stop()


async def test_the_agent_the_operator_looks_at_sends_its_whole_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the console with summaries, the selected card's agent is watched: its host sends
    its log (from its last lines on) into the mirror here, where the same parsers read it;
    the others send summaries only."""
    from chump_tui.cli import parse_args
    from chump_tui.tui.app import ChumpApp
    from chump_tui.tui.launch import repo_setup
    from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
    from tests.fleet_rig import member_args, member_env
    from tests.tui_factory import close_app, screen_text, until

    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(2)})
    env = claude_env(tmp_path, "hang")  # an init, a line of text, then it waits
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    logs = repos["console"] / "sessions" / "chump-tui" / "logs"
    with nats_server(tmp_path) as server:
        for name, value in member_env().items():
            monkeypatch.setenv(name, value)
        w1 = start_worker(server.url, repos["w1"], "w1", env, 2)
        setup = repo_setup(parse_args([
            "--backlog", str(repos["console"] / "gaps.yaml"), "--repo-root",
            str(repos["console"]), "--execute", "--nats", server.url, *member_args("console"),
            "--kill-grace", "1", "--tick", "0.3", "--fleet-output", "summary"]))
        app = ChumpApp(setup)
        try:
            async with app.run_test(size=(160, 50)) as pilot:
                await until(pilot, lambda: app.fleet_hosts() == [("w1", 2, 2)], 20, "w1 up")
                await pilot.press("a", "d")
                await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
                await pilot.press("enter")
                await until(pilot, lambda: len(app.dispatches) == 2 and all(
                    d.label() == "RUNNING" for d in app.dispatches.values()), 60, "running")

                def mirrored(key: str) -> str:
                    path = logs / f"{key.replace('#', '-attempt').lower()}.log"
                    return path.read_text() if path.exists() else ""

                watched = app.screen.selected  # type: ignore[attr-defined]
                other = next(k for k in app.dispatches if k != watched)
                await until(pilot, lambda: '"subtype": "init"' in mirrored(watched), 30,
                            "the watched agent's log, mirrored")
                await until(pilot, lambda: "working on it" in screen_text(app), 10,
                            "its lines, parsed here, in the pane")
                assert mirrored(other) == ""  # the other one: summaries only
                # Its card still shows what its host parsed: its model and turn.
                await until(pilot, lambda: app.engine.activity(other).model  # type: ignore[union-attr]
                            == "claude-fake-1", 10, "the other's model, from its summary")
                app.engine.stop_all("test over", grace_s=0.5)
        finally:
            close_app(app)
            w1.stop()
