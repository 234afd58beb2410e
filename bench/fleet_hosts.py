"""A load generator for the fleet at scale: many simulated worker hosts in one process,
speaking the real wire to a real nats-server, with no agent processes behind them.

  fleet_hosts.py URL FLEET_DIR ORIGIN FIRST COUNT SLOTS RATE END_FILE GH_STATE OUT

Hosts ``w<FIRST>`` … ``w<FIRST+COUNT-1>`` (identities from FLEET_DIR, as ``fleet init``
made them), each with SLOTS slots, do what ``chump-tui worker --fleet-output summary`` does
on the broker: signed presence records every heartbeat; requests taken off the work queue
(signature checked against the fleet's trust file, taken once in ``chump_fleet_requests``,
the gap claimed in ``chump_gaps``), answered ``accepted`` and ``spawned``, an ``INTENT``
event; then, until END_FILE exists (and up to ENDING_S more, spread), a simulated claude
agent writing RATE stream-json events a second: a summary at most once a second (activity,
and its new lines as the worker shows them, cut as the worker cuts them), its whole output
while a console watches it (signed watch requests, from the dispatching console only; its
last 64 KB first), its last summary
with its cost, ``exited`` 0, and its branch merged in the stub ``gh``'s state. Kills are
obeyed. What each host published is written to OUT as JSON at SIGTERM.

The console's side is what the figure measures; this stands in for thirty machines, so it
runs their agents as arithmetic, not processes.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nats.aio.msg import Msg  # noqa: E402

from chump_tui.agent_process import OutputLog  # noqa: E402
from chump_tui.agent_streams.decoder import decode  # noqa: E402
from chump_tui.fleet import wire  # noqa: E402
from chump_tui.fleet.broker import Broker, ClaimHeld, FleetError  # noqa: E402
from chump_tui.fleet.identity import TrustList, read_trust_file  # noqa: E402
from chump_tui.fleet.summaries import Summaries  # noqa: E402
from chump_tui.fleet.worker import claim_session  # noqa: E402
from chump_tui.fleet.worker_output import WATCH_TAIL_BYTES  # noqa: E402
from chump_tui.harness import stream_format  # noqa: E402
from chump_tui.log_lines import LineSplitter  # noqa: E402
from chump_tui.paths import dispatch_paths  # noqa: E402
from tests.fleet_rig import fleet_client  # noqa: E402

ROUND_S = 0.1  # a worker's pump round (a burst of each agent's events)
HEARTBEAT_S = 5.0  # the worker's default
ENDING_S = 5.0  # once told to end, the agents end spread over this (not all in one round)
RESULT = "x" * 4000  # a tool result, as the real bench agent writes
STAMP = "t={:.4f}"
STAMPED = re.compile(r"t=\d{10}\.\d{4}")


def burst(i: int, per_burst: int, now: float) -> list[str]:
    """One 100 ms burst of the bench agent's claude stream-json (tool calls and their 4 KB
    results, then a text carrying the time it was written), as lines."""
    lines = []
    for j in range(i, i + per_burst):
        lines.append(json.dumps({"type": "assistant", "message": {"id": f"m{j}", "content": [
            {"type": "tool_use", "id": f"t{j}", "name": "Bash",
             "input": {"command": f"cargo test -p c{j % 9}"}}],
            "usage": {"input_tokens": 1000 + j, "output_tokens": 50}}}))
        lines.append(json.dumps({"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": f"t{j}", "content": RESULT,
             "is_error": False}]}}))
    lines.append(json.dumps({"type": "assistant", "message": {"id": f"s{i}", "content": [
        {"type": "text", "text": STAMP.format(now)}]}}))
    return lines


def a_second_as_shown(rate: int) -> tuple[list[str], dict[str, object]]:
    """What a real worker's summary of one second of the bench agent carries: the lines
    its parser shows, cut by ``Summaries``, and the activity fields (measured once, through
    the real parser and summariser; the hosts then vary the numbers)."""
    output = OutputLog()
    fmt = stream_format("claude")
    splitter = LineSplitter()
    text = [json.dumps({"type": "system", "subtype": "init", "session_id": "s",
                        "model": "claude-sonnet-4"})]
    per_burst = max(1, (rate // 10 - 1) // 2)
    for b in range(10):
        text += burst(b * per_burst, per_burst, time.time())
    output.record(decode(splitter.feed(("\n".join(text) + "\n").encode()), fmt))
    report = Summaries("w", lambda s: s).due("u", output, final=False)
    assert report is not None and report.activity is not None
    return [STAMPED.sub("t=0.0000", line) for line in report.lines], report.activity


@dataclass
class SimAgent:
    uid: str
    key: str
    gap_id: str
    console_key: str
    started: float
    per_burst: int
    pid: int
    events: int = 0
    bursts: int = 0
    sent: int = 0  # bytes of its output sent (offsets)
    summary_at: float = 0.0
    watched_until: float = 0.0
    log_bytes: int = 0  # its log's size on this host
    tail_sent: bool = False
    killed: bool = False
    ends: float = float("inf")


@dataclass
class Published:
    messages: int = 0
    bytes: int = 0
    summaries: int = 0
    outputs: int = 0
    agents: int = 0
    exits: int = 0
    watches: int = 0
    refused: list[str] = field(default_factory=list)


class SimHost:
    """One simulated worker host (a thread of its own, its own connection)."""

    def __init__(self, name: str, broker: Broker, key: str, slots: int, rate: int,
                 end_file: Path, gh_state: Path, trust: TrustList,
                 lines: list[str], activity: dict[str, object]) -> None:
        self.name = name
        self.broker = broker
        self.key = key
        self.subject = wire.agents_subject(key, name)
        self.slots = slots
        self.rate = rate
        self.per_burst = max(1, (rate // 10 - 1) // 2)
        self.burst_bytes = sum(len(x) + 1 for x in burst(0, self.per_burst, time.time()))
        self.end_file = end_file
        self.ending = False
        self.gh_state = gh_state
        self.trust = trust
        self.lines = lines
        self.activity = activity
        self.agents: dict[str, SimAgent] = {}
        self.lock = threading.Lock()
        self.out = Published()
        self.started_at = wire.rfc3339()
        self._pids = iter(range(10_000, 10_000_000))

    # -- the worker's loop
    def run(self, stop: threading.Event) -> None:
        self.broker.subscribe(wire.watch_subject(self.name), self._on_watch)
        self.broker.subscribe(wire.kill_subject(self.name), self._on_kill)
        queue = self.broker.work_queue(self.key)
        beat_at = 0.0
        while not stop.is_set():
            began = time.monotonic()
            if began >= beat_at:
                self._heartbeat()
                beat_at = began + HEARTBEAT_S
            while len(self.agents) < self.slots and not stop.is_set():
                try:
                    msg = queue.fetch(0.02)
                except FleetError:
                    break
                if msg is None:
                    break
                self._take(msg)
                queue.ack(msg)
            self._round()
            stop.wait(max(0.0, ROUND_S - (time.monotonic() - began)))

    def _heartbeat(self) -> None:
        with self.lock:
            running = list(self.agents.values())
        record = wire.WorkerRecord(
            worker_id=self.name, backend="chump-tui", machine=f"{self.name}.sim",
            harness="claude", started_at=self.started_at, status="active",
            updated_at=wire.rfc3339(), current_gap=running[0].gap_id if running else None,
            repo=self.key, max_parallel=self.slots, running=len(running), busy=[],
            heartbeat_s=HEARTBEAT_S)
        data = record.signed(self.broker.identity)  # type: ignore[arg-type]
        try:
            self.broker.kv_put(self.broker.workers_bucket, self.name, data)
        except FleetError:
            return
        self._count(1, len(data))

    def _report(self, kind: str, uid: str, **fields: object) -> None:
        data = wire.encode(wire.AgentReport(kind=kind, uid=uid, worker=self.name,
                                            host=self.name, **fields))  # type: ignore[arg-type]
        self.broker.publish(self.subject, data)
        self._count(1, len(data))

    def _count(self, messages: int, size: int) -> None:
        self.out.messages += messages
        self.out.bytes += size

    def _take(self, msg: Msg) -> None:
        payload = bytes(msg.data)
        signer = wire.signer_of(msg.subject, payload, msg.headers)
        try:
            request = wire.decode(payload)
        except wire.WireError as exc:
            self.out.refused.append(str(exc))
            return
        if not isinstance(request, wire.DispatchRequest):
            return
        if signer is None or not self.trust.trusts(signer, "console"):
            self._report("rejected", request.uid, note="not signed by a trusted console",
                         request_key=signer or "")
            return
        if not self.broker.take_request(request.uid, self.name):
            self._report("rejected", request.uid, note="taken before", request_key=signer,
                         refusal="retry")
            return
        self._report("accepted", request.uid, request_key=signer)
        session = claim_session(request.uid)
        try:
            self.broker.claim(request.gap_id, wire.Claim(session, wire.rfc3339()))
        except ClaimHeld as held:
            self._report("rejected", request.uid, note=f"claimed by {held}",
                         request_key=signer, refusal="claimed")
            return
        now = time.time()
        agent = SimAgent(uid=request.uid, key=request.key, gap_id=request.gap_id,
                         console_key=signer, started=now,
                         per_burst=self.per_burst, pid=next(self._pids))
        if self.ending:  # told to end before it started: it works a moment, then ends
            agent.ends = now + ENDING_S
        with self.lock:
            self.agents[agent.uid] = agent
        self.out.agents += 1
        self._report("spawned", agent.uid, pid=agent.pid, start_time=now, harness="claude",
                     backend="claude", request_key=signer)
        self.broker.publish_event(wire.event_subject("INTENT"),
                                  wire.coord_event("INTENT", session, gap=request.gap_id))

    def _round(self) -> None:
        """One pump round: each agent's burst, the summaries due, the watched agents'
        bytes, then the exits of the agents whose time is up (after their last summary)."""
        now = time.time()
        with self.lock:
            agents = list(self.agents.values())
        if not self.ending and self.end_file.exists():
            self.ending = True
            for n, agent in enumerate(agents):
                agent.ends = now + ENDING_S * n / max(1, len(agents))
        reports: list[wire.AgentReport] = []
        ending: list[SimAgent] = []
        for agent in agents:
            final = now >= agent.ends or agent.killed
            agent.bursts += 1
            agent.events += 2 * agent.per_burst + 1
            agent.log_bytes += self.burst_bytes
            if agent.watched_until > now:  # only a watched agent's bytes are made at all
                lines = burst((agent.bursts - 1) * agent.per_burst, agent.per_burst, now)
                reports.append(self._output(agent, lines))
            if final or now - agent.summary_at >= 1.0:
                agent.summary_at = now
                reports.append(self._summary(agent, now, final))
            if final:
                ending.append(agent)
        if reports:
            messages = wire.encode_reports(reports)
            try:
                stored = all(self.broker.publish_many([(self.subject, m) for m in messages]))
            except FleetError:
                stored = False
            if not stored:
                return
            self._count(len(messages), sum(len(m) for m in messages))
            self.out.summaries += sum(1 for r in reports if r.kind == "summary")
            self.out.outputs += sum(1 for r in reports if r.kind == "output")
        for agent in ending:
            code = -15 if agent.killed else 0
            try:
                self._report("exited", agent.uid, code=code)
            except FleetError:
                continue
            with self.lock:
                self.agents.pop(agent.uid, None)
            self.out.exits += 1
            if code == 0:
                with open(self.gh_state, "a") as fh:
                    fh.write(f"{dispatch_paths(ROOT, agent.gap_id)[1]} MERGED\n")

    def _output(self, agent: SimAgent, lines: list[str]) -> wire.AgentReport:
        data = ("\n".join(lines) + "\n").encode()
        if not agent.tail_sent:  # a watch starts with the last 64 KB of the log
            agent.tail_sent = True
            earlier: list[str] = []
            size, back = 0, 1
            while size < WATCH_TAIL_BYTES and back <= agent.bursts:
                old = burst((agent.bursts - back) * agent.per_burst, agent.per_burst, 0.0)
                earlier = old + earlier
                size += sum(len(x) + 1 for x in old)
                back += 1
            data = ("\n".join(earlier) + "\n").encode() + data
            agent.sent = max(0, agent.log_bytes - len(data))  # what it did not send
        report = wire.AgentReport(kind="output", uid=agent.uid, worker=self.name,
                                  host=self.name, offset=agent.sent, data=data)
        agent.sent += len(data)
        return report

    def _summary(self, agent: SimAgent, now: float, final: bool) -> wire.AgentReport:
        turns = agent.bursts * agent.per_burst
        activity = {**self.activity, "session_id": agent.uid[:16], "turns": turns,
                    "tool_calls": turns, "events": agent.events,
                    "tokens_in": 1000 * turns, "tokens_out": 50 * turns,
                    "cost_usd": round(0.0001 * turns, 6),
                    "first_event_ago": round(now - agent.started, 3),
                    "last_event_ago": 0.0}
        if final:
            activity.update(finished_ok=True, finished_text="done",
                            finished_subtype="success", finished_turns=turns,
                            finished_cost_usd=round(0.0001 * turns, 6),
                            finished_tokens_in=1000 * turns,
                            finished_tokens_out=50 * turns)
        stamp = STAMP.format(now)
        lines = tuple(line.replace("t=0.0000", stamp) for line in self.lines)
        return wire.AgentReport(kind="summary", uid=agent.uid, worker=self.name,
                                host=self.name, activity=wire.checked_activity(activity),
                                lines=lines)

    # -- a console's requests (on the broker's loop)
    def _console_request(self, msg: Msg) -> tuple[
            wire.KillRequest | wire.WatchRequest, SimAgent | None, str | None] | None:
        """A kill or watch request, its agent here, and why it is refused (None: obeyed),
        as the worker checks them."""
        payload = bytes(msg.data)
        signer = wire.signer_of(msg.subject, payload, msg.headers)
        try:
            request = wire.decode(payload)
        except wire.WireError:
            return None
        if not isinstance(request, wire.KillRequest | wire.WatchRequest):
            return None
        with self.lock:
            agent = self.agents.get(request.uid)
        refusal = None
        if signer is None or not self.trust.trusts(signer, "console"):
            refusal = "not signed by a console this worker trusts"
        elif time.time() > request.expires_at:
            refusal = "the request expired"
        elif agent is None:
            refusal = wire.NO_SUCH_AGENT
        elif signer != agent.console_key:
            refusal = "not signed by the console that dispatched it"
        return request, agent, refusal

    async def _answer(self, msg: Msg, uid: str, yes: str, refusal: str | None) -> None:
        reply = wire.AgentReport(kind="rejected" if refusal else yes, uid=uid,
                                 worker=self.name, host=self.name, note=refusal or "")
        await self.broker.respond(msg, wire.encode(reply))

    async def _on_watch(self, msg: Msg) -> None:
        read = self._console_request(msg)
        if read is None or not isinstance(read[0], wire.WatchRequest):
            return
        request, agent, refusal = read
        assert isinstance(request, wire.WatchRequest)
        if refusal is None and agent is not None:
            if agent.watched_until <= time.time():
                agent.tail_sent = False  # a new watch: from the log's last 64 KB again
            self.out.watches += 1
            if request.until <= time.time():
                agent.watched_until = 0.0
            else:
                agent.watched_until = min(request.until, time.time() + 120.0)
        await self._answer(msg, request.uid, "watching", refusal)

    async def _on_kill(self, msg: Msg) -> None:
        read = self._console_request(msg)
        if read is None or not isinstance(read[0], wire.KillRequest):
            return
        request, agent, refusal = read
        if refusal is None and agent is not None:
            agent.killed = True
        await self._answer(msg, request.uid, "killing", refusal)


def main() -> None:
    (url, fleet, origin, first, count, slots, rate, end_file, gh_state,
     out_path) = sys.argv[1:11]
    fleet_dir = Path(fleet)
    trust = TrustList(read_trust_file(fleet_dir / "trust"))
    key = wire.repo_key(origin)
    lines, activity = a_second_as_shown(int(rate))
    hosts = []
    for i in range(int(first), int(first) + int(count)):
        name = f"w{i}"
        hosts.append(SimHost(name, fleet_client(url, fleet_dir, name), key, int(slots),
                             int(rate), Path(end_file), Path(gh_state), trust, lines,
                             activity))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=h.run, args=(stop,), name=h.name, daemon=True)
               for h in hosts]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    stop.wait()
    for thread in threads:
        thread.join(5)
    Path(out_path).write_text(json.dumps({h.name: h.out.__dict__ for h in hosts}))
    for host in hosts:
        host.broker.close()


if __name__ == "__main__":
    main()
