"""Notifications: the moments an operator acts on reach a webhook on loopback (and a command,
and the terminal) once each, in order, coalesced; a webhook that fails or hangs costs the
console nothing and loses nothing. Real engine, real subprocess agents, a real HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chump_tui import notify
from chump_tui.backlog import Gap
from chump_tui.notify import Notifier, NotifySettings, WebhookSink, sinks_for
from chump_tui.pr_providers import PrStatus, ScriptedPrProvider
from tests.conftest import wait_for
from tests.test_engine import ScriptSpawner, make_engine


class Receiver:
    """A webhook on 127.0.0.1 that records every document; ``mode``: ok, fail (HTTP 500) or
    hang (answers only after ``hang_s``)."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self.mode = "ok"
        self.hang_s = 3.0
        self.tries = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.tries += 1
                if receiver.mode == "hang":
                    time.sleep(receiver.hang_s)
                if receiver.mode != "ok":
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.documents.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [event for doc in self.documents for event in doc["events"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def gap(gid: str) -> Gap:
    return Gap(gid, f"title of {gid}", "P1", "s", "open")


def test_one_run_with_each_outcome_arrives_once_each_in_order(receiver: Receiver) -> None:
    gaps = [gap("S-1"), gap("C-1"), gap("K-1"), gap("Q-1")]
    spawner = ScriptSpawner({"S-1": "sleep 0.2", "C-1": "sleep 0.2", "K-1": "exit 3",
                             "Q-1": "echo working; sleep 30"})
    provider = ScriptedPrProvider({"claude/s-1": [PrStatus(7, "MERGED")],
                                   "claude/c-1": [PrStatus(8, "CLOSED")]})
    engine, _, _ = make_engine(provider, spawner, backlog=gaps, max_parallel=4,
                               idle_timeout_s=2.0)
    settings = NotifySettings(notify.EVENT_KINDS, receiver.url, terminal=False,
                              desktop=False)
    notifier = Notifier(settings.events, sinks_for(settings, None), all_over=engine.all_over,
                        window_s=0.2)
    engine.subscribe(notifier)
    engine.dispatch(gaps)
    engine.start()
    try:
        assert engine.wait_until_idle(20)
        assert notifier.flush(10)
    finally:
        engine.close()
        notifier.close()
    events = receiver.events()
    said = [(e["kind"], e["key"]) for e in events]
    for key, outcome in (("S-1#1", "SHIPPED"), ("C-1#1", "CI-FAILED"), ("K-1#1", "EXITED 3"),
                         ("Q-1#1", "KILLED")):
        ended = [e for e in events if e["kind"] == "ended" and e["key"] == key]
        assert len(ended) == 1 and ended[0]["outcome"] == outcome, said
    assert said.count(("quiet", "Q-1#1")) == 1
    assert said.index(("quiet", "Q-1#1")) < said.index(("ended", "Q-1#1"))
    assert said[-1] == ("done", "") and said.count(("done", "")) == 1
    assert all(doc["text"] and doc["source"] == "chump-tui" for doc in receiver.documents)
    times = [e["at"] for e in events]
    assert times == sorted(times)  # in the order they happened


def test_forty_agents_ending_together_are_one_notification(receiver: Receiver) -> None:
    gaps = [gap(f"F-{n}") for n in range(40)]
    provider = ScriptedPrProvider({f"claude/f-{n}": [PrStatus(100 + n, "MERGED")]
                                   for n in range(40)})
    engine, _, _ = make_engine(provider, ScriptSpawner(default="sleep 0.5"), backlog=gaps,
                               max_parallel=40)
    settings = NotifySettings(("ended", "done"), receiver.url, terminal=False, desktop=False)
    notifier = Notifier(settings.events, sinks_for(settings, None), all_over=engine.all_over)
    engine.subscribe(notifier)
    engine.dispatch(gaps)  # all running before the first poll says MERGED for every one
    engine.start()
    try:
        assert engine.wait_until_idle(30)
        assert notifier.flush(10)
    finally:
        engine.close()
        notifier.close()
    (document,) = receiver.documents
    assert document["count"] == 41
    assert document["text"] == "chump-tui: 40 attempt(s) ended (40 shipped); every agent is done"


def test_a_failing_webhook_is_retried_in_order_and_loses_nothing(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "FIRST_RETRY_S", 0.1)
    monkeypatch.setattr(notify, "WEBHOOK_TIMEOUT_S", 0.5)
    receiver.mode = "fail"
    sink = WebhookSink(receiver.url)
    for n in range(3):
        sink.put(notify.Batch([notify.Note("ended", f"note {n}", key=f"G-{n}#1")],
                              f"note {n}", float(n)))
    wait_for(lambda: receiver.tries >= 2, 10, "retries")
    assert sink.trouble() == "webhook: HTTP 500 (retrying)"
    receiver.mode = "hang"
    wait_for(lambda: "timed out" in (sink.trouble() or "") or "reach" in (sink.trouble() or ""),
             10, "a hanging receiver is a timeout")
    receiver.mode = "ok"
    wait_for(lambda: len(receiver.documents) == 3, 15, "everything once it recovers")
    assert [d["text"] for d in receiver.documents] == ["note 0", "note 1", "note 2"]
    assert sink.trouble() is None
    sink.close()


def test_a_command_gets_each_notification_as_json(tmp_path: Path) -> None:
    out = tmp_path / "got.jsonl"
    sink = notify.CommandSink(["sh", "-c", f"cat >> {out}; echo >> {out}"])
    sink.put(notify.Batch([notify.Note("budget", "G-1#1: budget $0.50 reached",
                                       key="G-1#1")], "G-1#1: budget $0.50 reached", 1.0))
    wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1, 10, "the command ran")
    sink.close()
    (document,) = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert document["events"][0]["kind"] == "budget" and document["count"] == 1


def test_the_terminal_escape_is_ours_alone_whatever_the_title_says() -> None:
    hostile = "fix \x1b]9;pwned\x07 and \x1b]777;notify;x;y\x1b\\ \x9b31m\nnext line"
    written = notify.terminal_bytes(f"G-1#1 SHIPPED — {hostile}")
    assert written.startswith("\a\x1b]9;") and written.endswith("\x1b\\")
    inside = written[len("\a\x1b]9;"):-2]
    assert not any(ch in inside for ch in "\x1b\x07\x9b\n\r"), repr(inside)
    assert "␛]9;pwned␇" in inside  # shown, as the console shows outside text
    assert notify.terminal_bytes("x", osc_777=True).startswith("\a\x1b]777;notify;chump-tui;")


@pytest.mark.parametrize("text, ok", [("ended,quiet", True), ("all", True), ("done", True),
                                      ("ended,nope", False), ("", False)])
def test_notify_events_are_checked(text: str, ok: bool) -> None:
    if ok:
        assert set(notify.parse_events(text)) <= set(notify.EVENT_KINDS)
    else:
        with pytest.raises(ValueError):
            notify.parse_events(text)


async def test_a_hanging_webhook_never_slows_a_key_and_catches_up_after(
        git_repo: Path, stub_env: dict[str, str], receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli_e2e import FOUR_GAPS
    from tests.tui_factory import close_app, live_app, screen_text, until

    monkeypatch.setattr(notify, "FIRST_RETRY_S", 0.2)
    monkeypatch.setattr(notify, "WEBHOOK_TIMEOUT_S", 1.0)
    receiver.mode, receiver.hang_s = "hang", 30.0
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    app = live_app(git_repo, git_repo / "gaps.yaml")
    app.setup.notify = NotifySettings(("ended",), receiver.url, terminal=False, desktop=False)
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            await pilot.press("d", "y")
            await until(pilot, lambda: any(d.label() == "SHIPPED"
                                           for d in app.dispatches.values()), 20, "shipped")
            await until(pilot, lambda: receiver.tries >= 1, 10, "the webhook tried")
            await until(pilot, lambda: "notify webhook" in screen_text(app), 10,
                        "the trouble on the status line")
            for key, screen in (("s", "SummaryScreen"), ("m", "MonitorScreen"),
                                ("b", "BacklogScreen")):
                pressed = time.monotonic()
                await pilot.press(key)
                await until(pilot, lambda screen=screen: type(app.screen).__name__ == screen,
                            2, f"{key} answered")
                assert time.monotonic() - pressed < 1.0
            receiver.mode = "ok"
            await until(pilot, lambda: len(receiver.events()) == 1, 15, "the notification")
    finally:
        close_app(app)
    (event,) = receiver.events()
    assert event["kind"] == "ended" and event["outcome"] == "SHIPPED"


def test_plain_mode_rings_a_terminal_with_our_escape_only(
        git_repo: Path, stub_env: dict[str, str], tmp_path: Path) -> None:
    """Under a real pty: the bell and one OSC 9 of ours per notification; a gap title that
    carries OSC 9 itself reaches the terminal only as visible text."""
    import os
    import pty
    import subprocess
    import sys

    (git_repo / "gaps.yaml").write_text(
        'gaps:\n  - {id: T-1, title: "ship \\e]9;pwned\\a it", priority: P1, effort: s, '
        'status: open}\n')
    got = tmp_path / "cmd.jsonl"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chump_tui", "--no-tui", "--execute", "--watch", "--backlog",
         "gaps.yaml", "--tick", "0.2", "--notify", "ended,done", "--notify-cmd",
         f"sh -c 'cat >> {got}; echo >> {got}'"],
        cwd=git_repo, env={**os.environ, **stub_env}, stdin=subprocess.DEVNULL,
        stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed: the run is over
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(60) == 0
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    ours = screen.count("\x1b]9;")
    assert ours >= 1 and screen.count("\a\x1b]9;") == ours  # each with its bell
    assert "\x1b]9;pwned" not in screen
    assert "T-1#1 SHIPPED" in screen.split("\x1b]9;", 1)[1]
    documents = [json.loads(line) for line in got.read_text().splitlines() if line.strip()]
    kinds = [e["kind"] for d in documents for e in d["events"]]
    assert kinds == ["ended", "done"]
    assert "pwned" in documents[0]["events"][0]["title"]  # JSON carries it, escaped


def test_the_console_rings_the_bell_in_tmux(git_repo: Path, stub_env: dict[str, str]) -> None:
    import sys

    from tests.test_cli_e2e import FOUR_GAPS
    from tests.tmux_session import TmuxPane

    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    pane = TmuxPane()
    try:
        pane.start(git_repo, stub_env)
        pane.run([sys.executable, "-m", "chump_tui", "--execute", "--backlog", "gaps.yaml",
                  "--tick", "0.2", "--notify", "ended"])
        pane.wait_for(lambda s: "E2E-001" in s, 30, "the backlog")
        pane.send("d")
        pane.wait_for(lambda s: "Dispatch (y)" in s, 10, "the dialog")
        pane.tmux("new-window", "-t", "t")  # the console's window is not the one looked at
        assert pane.tmux("list-windows", "-t", "t", "-F", "#{window_bell_flag}").split() == \
            ["0", "0"]
        pane.tmux("send-keys", "-t", "t:0", "y")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            flags = pane.tmux("list-windows", "-t", "t", "-F", "#{window_bell_flag}").split()
            if flags[:1] == ["1"]:
                break
            time.sleep(0.1)
        assert flags[:1] == ["1"], pane.tmux("capture-pane", "-p", "-t", "t:0")
        assert "SHIPPED" in pane.tmux("capture-pane", "-p", "-t", "t:0")
    finally:
        pane.close()
