"""The shared follower thread: every agent's log on one thread, none starved, none lost."""

from __future__ import annotations

import threading
from pathlib import Path

from chump_tui import agent_process
from chump_tui.agent_process import AgentProcess, LogFollower, OutputLog
from tests.conftest import wait_for


def test_twenty_agents_are_followed_by_one_thread_and_every_line_arrives(tmp_path: Path) -> None:
    outputs = [OutputLog() for _ in range(20)]
    agents = [
        AgentProcess.spawn(["sh", "-c", f"i=0; while [ $i -lt 300 ]; do echo agent{n} line $i; "
                                        "i=$((i+1)); done; sleep 0.3"],
                           tmp_path, {"PATH": "/usr/bin:/bin"}, tmp_path / f"a{n}.log", out)
        for n, out in enumerate(outputs)
    ]
    followers = [t for t in threading.enumerate() if t.name == "log-followers"]
    assert len(followers) == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("follow-")]
    for agent in agents:
        assert agent.wait(30) == 0
        follower = agent.follower
        agent.join_output(10)
        assert follower is not None and follower.done.is_set()
        assert agent.follower is None  # released once it read everything
    for n, out in enumerate(outputs):
        assert out.lines_seen == 300
        assert out.tail(1) == [f"agent{n} line 299"]


def test_a_failing_follower_does_not_stop_the_others(tmp_path: Path) -> None:
    good_log, bad_log = tmp_path / "good.log", tmp_path / "bad.log"
    good_log.write_text("one\n")
    bad_log.write_text("boom\n")
    good, bad = OutputLog(), OutputLog()
    good_seen: list[str] = []
    ended = threading.Event()

    def explode(lines: list[str]) -> None:
        raise RuntimeError("subscriber bug")

    bad_follower = LogFollower(bad_log, bad, explode, lambda: False).start()
    good_follower = LogFollower(good_log, good, good_seen.extend, ended.is_set).start()
    assert bad_follower.join(10), "the failing follower was never finished"
    assert any("stopped following this log" in line for line in bad.tail())
    with good_log.open("a") as fh:
        fh.write("two\n")
    wait_for(lambda: good_seen == ["one", "two"], 20, "the good follower's second line")
    ended.set()
    assert good_follower.join(10)


def test_a_file_far_behind_is_read_in_back_to_back_rounds(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = "x" * 99 + "\n"
    log.write_text(line * 50_000)  # 5 MB: five reads of READ_CHUNK
    out = OutputLog()
    follower = LogFollower(log, out, None, lambda: True).start()
    assert follower.join(20)
    assert out.lines_seen == 50_000
    assert log.stat().st_size > agent_process.READ_CHUNK


def test_stop_finishes_a_follower_promptly(tmp_path: Path) -> None:
    log = tmp_path / "quiet.log"
    log.write_text("")
    follower = LogFollower(log, OutputLog(), None, lambda: False).start()
    follower.stop()
    assert follower.join(5)
