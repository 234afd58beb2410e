"""Who may do what on the fleet, tried as an attacker would: against a real nats-server that
admits only `chump-tui fleet init`'s identities, and against an open one (where only the
signatures stand between a stranger and the workers). Real workers, real clones, the
stand-in agent, the stub gh."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chump_tui.fleet import wire
from chump_tui.fleet.broker import Broker, FleetError
from chump_tui.fleet.identity import TrustList, from_seed, new_seed
from chump_tui.fleet.roster import init_fleet, role_permissions
from chump_tui.fleet.security import fleet_identity
from chump_tui.log_lines import Redactor
from tests.conftest import HELPERS, git, wait_for
from tests.fleet_rig import (
    end_workers_and_agents,
    member_args,
    member_env,
    nats_server,
    origin_with_clones,
    start_worker,
)
from tests.test_fleet import console, fleet_env, fleet_gaps


@pytest.fixture(autouse=True)
def no_worker_or_agent_outlives_its_test() -> Iterator[None]:
    yield
    end_workers_and_agents()


BACKLOG = fleet_gaps(1) + """\
  - {id: FLEET-DONE, title: shipped, priority: P1, effort: s, status: done}
  - {id: FLEET-XL, title: too big, priority: P1, effort: xl, status: open}
"""


# ------------------------------------------------------------------ without a server
def test_a_signature_binds_sender_subject_and_payload() -> None:
    me, other = from_seed(new_seed()), from_seed(new_seed())
    headers = wire.signed_headers(me, "chump.fleet.dispatch.k", b"payload")
    assert wire.signer_of("chump.fleet.dispatch.k", b"payload", headers) == me.public_key
    assert wire.signer_of("chump.fleet.dispatch.k", b"payl0ad", headers) is None
    assert wire.signer_of("chump.fleet.kill.w1", b"payload", headers) is None  # replayed elsewhere
    forged = {**headers, wire.KEY_HEADER: other.public_key}
    assert wire.signer_of("chump.fleet.dispatch.k", b"payload", forged) is None
    assert wire.signer_of("chump.fleet.dispatch.k", b"payload", None) is None
    assert wire.signer_of("s", b"p", {wire.KEY_HEADER: "U" * 56, wire.SIG_HEADER: "%%"}) is None


def test_a_presence_record_proves_its_key() -> None:
    me = from_seed(new_seed())
    record = wire.WorkerRecord(worker_id="w1", backend="chump-tui", machine="m",
                               harness="claude", started_at="s", status="active",
                               updated_at="u", repo="k", max_parallel=4, heartbeat_s=5.0)
    signed = wire.WorkerRecord.from_bytes(record.signed(me))
    assert signed.verified and signed.key == me.public_key
    tampered = json.loads(record.signed(me))
    tampered["max_parallel"] = 400
    assert not wire.WorkerRecord.from_bytes(json.dumps(tampered).encode()).verified
    assert not wire.WorkerRecord.from_bytes(record.to_bytes()).verified  # unsigned


def test_trust_lists_and_files(tmp_path: Path) -> None:
    keys = [from_seed(new_seed()).public_key for _ in range(3)]
    trust_file = tmp_path / "trust"
    trust_file.write_text(f"# fleet\nconsole laptop {keys[0]}\nworker w1 {keys[1]}\n")
    trust = TrustList().add([str(trust_file)]).add([keys[2]], "console")
    assert trust.trusts(keys[0], "console") and trust.trusts(keys[2], "console")
    assert not trust.trusts(keys[1], "console")
    assert trust.trusts(keys[1], "worker", "w1") and not trust.trusts(keys[1], "worker", "w2")
    trust_file.write_text(f"console laptop {keys[1]}\n")  # rotated
    os.utime(trust_file, (time.time() + 5, time.time() + 5))
    assert trust.reload_if_changed()
    assert trust.trusts(keys[1], "console") and not trust.trusts(keys[0], "console")
    bad = tmp_path / "bad"
    bad.write_text("console laptop not-a-key\n")
    with pytest.raises(Exception, match="line 1"):
        TrustList().add([str(bad)])


def test_roles_get_only_their_subjects() -> None:
    console = role_permissions("console", "c", "UC")
    worker = role_permissions("worker", "w1", "UW")
    pub_c = console["publish"]["allow"]  # type: ignore[index]
    pub_w = worker["publish"]["allow"]  # type: ignore[index]
    assert "chump.fleet.dispatch.*" in pub_c and not any("chump.fleet.agent" in s for s in pub_c)
    assert "chump.fleet.agent.*.w1" in pub_w
    assert not any(s.startswith(("chump.fleet.dispatch", "chump.fleet.kill",
                                 "chump.fleet.watch")) for s in pub_w)
    assert "chump.fleet.watch.*" in pub_c
    assert "$KV.chump_workers.w1" in pub_w and "$KV.chump_workers.>" not in pub_w
    assert worker["subscribe"]["allow"] == [  # type: ignore[index]
        "_INBOX_UW.>", "chump.fleet.kill.w1", "chump.fleet.watch.w1"]
    assert not any(s.endswith(("STREAM.DELETE.>", "STREAM.PURGE.>")) or s == "$JS.API.>"
                   for s in pub_c + pub_w)


SECRETS = ["sk-ant-api03-SECRETSECRET", "ghp_TOKENTOKENTOKEN1234"]


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(["x", "sk-", "ant", "ghp_", "\n", *SECRETS]), max_size=30),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_a_secret_is_redacted_whatever_the_reads_cut(text: list[str], cuts: list[int]) -> None:
    """The worker's stream redaction, read in chunks cut anywhere: no secret gets through."""
    stream = "".join(text).encode()
    redactor = Redactor(SECRETS)
    out, pos = b"", 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        if cut <= pos:
            continue
        data, held = redactor.redact_stream(stream[pos:cut], final=cut >= len(stream))
        out += data
        pos = cut - held
    if pos < len(stream):
        out += redactor.redact_stream(stream[pos:], final=True)[0]
    assert not any(s.encode() in out for s in SECRETS)
    assert redactor.redact_stream(stream, final=True)[0] == out  # as if read at once


# ------------------------------------------------------------------ helpers
def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", message)


def publish_as(broker: Broker, subject: str, payload: bytes,
               headers: dict[str, str] | None) -> None:
    """A message with the headers given (a forged or missing signature), stored."""
    broker.run(broker.js.publish(subject, payload, headers=headers))


def refused_publish(broker: Broker, subject: str) -> str:
    """The broker refuses ``subject`` to this identity: the permission error it reports."""
    before = len(broker.errors)
    with pytest.raises(FleetError):
        broker.run(broker.js.publish(subject, b"{}"), timeout=2)
    wait_for(lambda: len(broker.errors) > before, 5, "the server's refusal")
    return broker.errors[-1]


def request(key: str, origin: str, gap_id: str = "FLEET-001", **over: object) -> bytes:
    fields: dict[str, object] = dict(uid=os.urandom(8).hex(), key=f"{gap_id}#1", gap_id=gap_id,
                                     origin=origin, base_ref="origin/main", harness="claude",
                                     console="test", expires_at=time.time() + 30)
    fields.update(over)
    return wire.encode(wire.DispatchRequest(**fields))  # type: ignore[arg-type]


def stream_reports(broker: Broker) -> list[tuple[str, dict[str, object]]]:
    """Every report on the agents' stream so far, as (signer, report)."""
    seen: list[tuple[str, dict[str, object]]] = []

    async def read() -> None:
        sub = await broker.js.subscribe("chump.fleet.agent.>", stream=wire.AGENTS_STREAM,
                                        ordered_consumer=True)
        with contextlib.suppress(Exception):
            while True:
                msg = await sub.next_msg(timeout=0.5)
                signer = wire.signer_of(msg.subject, msg.data, msg.headers) or ""
                body = json.loads(msg.data)
                for item in body.get("reports", [body]):
                    seen.append((signer, item))
        await sub.unsubscribe()

    broker.run(read(), 30)
    return seen


# ------------------------------------------------------------------ the broker's wall
def test_fleet_init_admits_its_identities_only_each_to_its_subjects(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "chump_tui", "fleet", "init", "--dir",
                           str(tmp_path / "f"), "--worker", "w1", "--worker", "w2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "chump-tui worker --nats nats://BROKER:4222 --nats-creds w1.nk" in done.stdout
    for name in ("console", "w1", "w2", "trust", "nats-server.conf"):
        path = tmp_path / "f" / (name if "." in name or name == "trust" else f"{name}.nk")
        assert path.stat().st_mode & 0o077 == 0, path
    with nats_server(tmp_path) as server:
        with pytest.raises(FleetError, match="refused a client without credentials"):
            Broker(server.url, name="stranger").connect()
        key = "0123456789abcdef"
        as_console, as_w1 = server.client("console"), server.client("w1")
        assert "permissions violation" in refused_publish(as_console,
                                                          wire.agents_subject(key, "w1"))
        assert "permissions violation" in refused_publish(as_w1, wire.dispatch_subject(key))
        assert "permissions violation" in refused_publish(as_w1, wire.agents_subject(key, "w2"))
        assert "permissions violation" in refused_publish(as_w1, "$KV.chump_workers.w2")
        before = len(as_w1.errors)
        with pytest.raises(FleetError):
            as_w1.request(wire.kill_subject("w2"), b"{}", 1)
        assert any("permissions violation" in e for e in as_w1.errors[before:])
        as_console.close()
        as_w1.close()


# ------------------------------------------------------------------ the worker's own checks
def test_a_worker_refuses_what_it_should_and_leaves_nothing_behind(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "w1", files={"gaps.yaml": BACKLOG})
    here = str(repos["origin"])
    env = {**fleet_env(tmp_path), "FAKE_AGENT_MODE": "hang"}
    stranger = from_seed(new_seed())
    with nats_server(tmp_path) as server:
        worker = start_worker(server.url, repos["w1"], "w1", env)
        tester = server.client("tester")
        key = wire.repo_key(here)
        subject = wire.dispatch_subject(key)

        def send(payload: bytes, signer: object = "tester") -> None:
            headers = (None if signer is None else
                       wire.signed_headers(stranger if signer == "stranger"
                                           else tester.identity, subject, payload))  # type: ignore[arg-type]
            publish_as(tester, subject, payload, headers)

        cases = {
            "unsigned": (request(key, here), None),
            "stranger": (request(key, here), "stranger"),
            "expired": (request(key, here, expires_at=time.time() - 5), "tester"),
            "too-long": (request(key, here, expires_at=time.time() + 3 * 86400), "tester"),
            "not-in-backlog": (request(key, here, gap_id="NOPE-9"), "tester"),
            "done": (request(key, here, gap_id="FLEET-DONE"), "tester"),
            "xl": (request(key, here, gap_id="FLEET-XL"), "tester"),
            "base": (request(key, here, base_ref="origin/evil"), "tester"),
            "option": (request(key, here, base_ref="--upload-pack=touch /tmp/pwned"), "tester"),
            "nul": (request(key, here, gap_id="FLEET-0\x0001"), "tester"),
            "escape": (request(key, here, gap_id="FLEET-\x1b]0;pwned\x07"), "tester"),
            "path": (request(key, here, gap_id="../../../etc/cron.d/x"), "tester"),
            "harness": (request(key, here, harness="codex"), "tester"),
            "origin": (request(key, "https://elsewhere.example/o/r.git"), "tester"),
        }
        for payload, signer in cases.values():
            send(payload, signer)
        send(b"\x00 not a request at all", "tester")
        good = request(key, here)
        send(good)
        wait_for(lambda: " as PID " in worker.output(), 60, "the one good request to run")
        send(good)  # a replay of a request that was obeyed
        wait_for(lambda: worker.output().count("refused ") >= len(cases) + 1, 60,
                 "every refusal: " + worker.output())
        out = worker.output()
        for why in ("not signed", "does not trust", "expired", "more than a day",
                    "NOPE-9 is not in this worker's backlog", "FLEET-DONE is not pickable",
                    "effort xl", "'origin/evil' is not this worker's base",
                    "'--upload-pack=touch /tmp/pwned' is not this worker's base",
                    "harness 'codex' is not one this worker runs",
                    "serves", "taken before", "dropped a malformed dispatch request"):
            assert why in out, why
        assert out.count(" as PID ") == 1 and worker.process.poll() is None
        assert "\x1b" not in out and "\x00" not in out  # shown, never obeyed
        # Nothing of any refused request exists: one worktree, one branch, one claim.
        worktrees = git(repos["w1"], "worktree", "list", "--porcelain").count("worktree ")
        branches = git(repos["w1"], "branch", "--list", "--format=%(refname:short)",
                       "claude/*").split()
        assert worktrees == 2 and branches == ["claude/fleet-001"], (worktrees, branches)
        assert set(tester.claims()) == {"FLEET-001"}
        assert not (repos["w1"].parent / "etc").exists() and not Path("/tmp/pwned").exists()
        # A refusal is said on the stream, signed by the worker, naming whose request it was.
        rejected = [(s, r) for s, r in stream_reports(tester) if r["kind"] == "rejected"]
        assert len(rejected) >= len(cases) - 1
        assert all(s == worker_key(server) for s, _ in rejected)
        tester.close()
        worker.stop()


def worker_key(server: object, name: str = "w1") -> str:
    from chump_tui.fleet.identity import load_identity

    return load_identity(server.fleet / f"{name}.nk").public_key  # type: ignore[attr-defined]


def test_only_the_dispatching_console_may_kill(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "w1", files={"gaps.yaml": BACKLOG})
    here = str(repos["origin"])
    env = {**fleet_env(tmp_path), "FAKE_AGENT_MODE": "slow", "FAKE_AGENT_SECONDS": "60"}
    with nats_server(tmp_path) as server:
        worker = start_worker(server.url, repos["w1"], "w1", env)
        tester, other = server.client("tester"), server.client("console")
        key = wire.repo_key(here)
        payload = request(key, here)
        uid = json.loads(payload)["uid"]
        tester.publish(wire.dispatch_subject(key), payload)
        wait_for(lambda: " as PID " in worker.output(), 60, "the agent to start")

        def kill(broker: Broker, expires: float = 30) -> dict[str, object]:
            body = wire.encode(wire.KillRequest(uid=uid, grace_s=1.0,
                                                expires_at=time.time() + expires))
            msg = broker.request(wire.kill_subject("w1"), body, 5)
            assert wire.signer_of(msg.subject, bytes(msg.data), msg.headers) == \
                worker_key(server)
            return json.loads(msg.data)  # type: ignore[no-any-return]

        assert kill(other)["note"] == "not signed by the console that dispatched it"
        assert kill(tester, expires=-1)["note"] == "the request expired"
        # Asking for its whole output is the dispatching console's alone too.
        watch = wire.encode(wire.WatchRequest(uid=uid, until=time.time() + 60,
                                              expires_at=time.time() + 30))
        answer = json.loads(other.request(wire.watch_subject("w1"), watch, 5).data)
        assert answer["note"] == "not signed by the console that dispatched it"
        assert json.loads(tester.request(wire.watch_subject("w1"), watch, 5).data)["kind"] \
            == "watching"
        unsigned = asyncio.run_coroutine_threadsafe(
            tester.nc.request(wire.kill_subject("w1"), wire.encode(wire.KillRequest(
                uid=uid, grace_s=0, expires_at=time.time() + 30)), timeout=5),
            tester._loop).result(10)
        assert json.loads(unsigned.data)["note"] == "not signed by a console this worker trusts"
        assert "exited" not in worker.output()
        assert kill(tester)["kind"] == "killing"
        wait_for(lambda: "exited" in worker.output(), 30, "the agent killed")
        tester.close()
        other.close()
        worker.stop()


# ------------------------------------------------------------------ an open broker
def test_an_open_broker_is_refused_unless_the_operator_says_so(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(1)})
    env = fleet_env(tmp_path)
    with nats_server(tmp_path, secure=False) as server:
        refused = console(repos["console"], server.url, env, "--watch")
        _out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2 and len(err.strip().splitlines()) == 1, err
        assert "lets a client without credentials connect" in err and "--insecure-broker" in err
        worker = subprocess.run(
            [sys.executable, "-m", "chump_tui", "worker", "--nats", server.url, "--repo-root",
             str(repos["w1"]), "--trust-console", from_seed(new_seed()).public_key],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert worker.returncode == 2 and "--insecure-broker" in worker.stderr
        # Said, and run: the console's key made beforehand, so the worker can trust it.
        console_key = fleet_identity(None, repos["console"] / "sessions" / "chump-tui"
                                   / "fleet-key.nk").public_key
        w1 = start_worker(server.url, repos["w1"], "w1", {**env, "TEST_CONSOLE_KEY": console_key})
        assert "WARNING --insecure-broker" in w1.output()
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3",
                      "--insecure-broker")
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0 and "shipped=1" in out, out + err
        assert "WARNING --insecure-broker" in err and console_key in err
        w1.stop()


def test_forged_reports_change_nothing_on_the_console(tmp_path: Path) -> None:
    """On an open broker anyone may publish on a worker's subject; nothing they say is
    believed: an exit, a cost, an absurd offset, a rival presence record."""
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(1)})
    env = {**fleet_env(tmp_path), "FAKE_AGENT_MODE": "slow", "FAKE_AGENT_SECONDS": "6"}
    console_key = fleet_identity(None, repos["console"] / "sessions" / "chump-tui"
                               / "fleet-key.nk").public_key
    attacker_id = from_seed(new_seed())
    with nats_server(tmp_path, secure=False) as server:
        w1 = start_worker(server.url, repos["w1"], "w1", {**env, "TEST_CONSOLE_KEY": console_key})
        # full: the forged output would reach the mirror if it were believed
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3",
                      "--insecure-broker", "--fleet-output", "full")
        wait_for(lambda: " as PID " in w1.output(), 60, "the agent to start")
        attacker = Broker(server.url, name="attacker", identity=attacker_id).connect()
        uid = next(r["uid"] for _, r in stream_reports(attacker) if r["kind"] == "spawned")
        key = wire.repo_key(str(repos["origin"]))
        subject = wire.agents_subject(key, "w1")
        forged = [  # believed, any of them would show: KILLED exit 7, $777, lost output
            wire.AgentReport(kind="exited", uid=uid, worker="w1", host="w1", code=7),
            wire.AgentReport(kind="output", uid=uid, worker="w1", host="w1", offset=2**40,
                             data=b"FORGED far ahead\n"),
            wire.AgentReport(kind="output", uid=uid, worker="w1", host="w1", offset=0,
                             data=b'{"type":"result","subtype":"success","num_turns":1,'
                                  b'"total_cost_usd":777.0,"result":"FORGED"}\n'),
            wire.AgentReport(kind="summary", uid=uid, worker="w1", host="w1",
                             activity={"cost_usd": 777.0, "finished_ok": True,
                                       "finished_cost_usd": 777.0},
                             lines=("FORGED summary",)),
        ]
        for report in forged:
            payload = wire.encode(report)
            publish_as(attacker, subject, payload, None)  # unsigned
            attacker.publish(subject, payload)  # signed, by a key that is not w1's
        record = wire.WorkerRecord(worker_id="w1", backend="chump-tui", machine="evil",
                                   harness="claude", started_at="s", status="active",
                                   updated_at=wire.rfc3339(), repo=key, max_parallel=9)
        attacker.kv_put(attacker.workers_bucket, "w1", record.signed(attacker_id))
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert "shipped=1  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out, out + err
        assert "$777" not in out and "exit code 7" not in out + err
        assert "[fleet] dropped" in err  # they reached the console, and were dropped
        log = next((repos["console"] / "sessions" / "chump-tui" / "logs").glob("*.log"))
        text = log.read_text()
        assert "FORGED" not in text and "not received" not in text
        assert text.count("WARN: pretend warning") == 1 and "101" in text  # all the real output
        attacker.close()
        w1.stop()


# ------------------------------------------------------------------ secrets stay home
SECRET_AGENT = f"""#!/bin/sh
echo "using $ANTHROPIC_API_KEY and $GH_TOKEN to work" >&2
printf 'a split secret: %s' "$GH_TOKEN" >&2; echo >&2
exec {HELPERS / 'fake_agent.sh'} "$@"
"""


@pytest.mark.parametrize("mode", ["summary", "full"])
def test_a_secret_only_on_the_worker_never_leaves_its_host(tmp_path: Path, mode: str) -> None:
    secrets = {"ANTHROPIC_API_KEY": "sk-ant-api03-" + "Q" * 40, "GH_TOKEN": "ghp_" + "Z" * 36}
    agent = tmp_path / "secret_agent.sh"
    agent.write_text(SECRET_AGENT)
    agent.chmod(0o755)
    repos = origin_with_clones(tmp_path, "console", "w1", files={"gaps.yaml": fleet_gaps(1)})
    env = fleet_env(tmp_path)
    for name in secrets:
        assert name not in os.environ  # the console's environment never has them
    with nats_server(tmp_path) as server:
        w1 = start_worker(server.url, repos["w1"], "w1",
                          {**env, **secrets, "CHUMP_CLAUDE_BIN": str(agent)})
        run = console(repos["console"], server.url, env, "--watch", "--tick", "0.3",
                      "--fleet-output", mode)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0 and "shipped=1" in out, out + err
        tester = server.client("tester")
        reports = [r for _, r in stream_reports(tester)]
        tester.close()
        on_the_wire = json.dumps(reports) + b"".join(
            base64.b64decode(str(r.get("data") or "")) for r in reports).decode("utf-8", "replace")
        w1.stop()
    session = repos["console"] / "sessions"
    places = {"the stream": on_the_wire,
              "the console's output": out + err,
              "the mirror log": "".join(p.read_text() for p in
                                        (session / "chump-tui" / "logs").glob("*.log")),
              "settled.jsonl and state.json": "".join(
                  p.read_text() for p in (session / "chump-tui").glob("s*.json*")),
              "the reflections": json.dumps(sqlite3.connect(session / "chump_memory.db")
                                            .execute("SELECT * FROM chump_reflections")
                                            .fetchall())}
    # What was said arrived, redacted on the host: whole (full), or in a summary's lines.
    assert "using *** and *** to work" in places[
        "the mirror log" if mode == "full" else "the stream"]
    for where, text in places.items():
        for value in secrets.values():
            assert value not in text and value[:12] not in text, where
    worker_logs = "".join(p.read_text() for p in
                          (repos["w1"] / "sessions" / "chump-tui-worker" / "logs").glob("*"))
    assert secrets["GH_TOKEN"] in worker_logs  # it was printed: it stayed on its host


def test_member_helpers_name_the_running_fleet(tmp_path: Path) -> None:
    assert member_args("console") == [] and member_env() == {}
    with nats_server(tmp_path) as server:
        assert member_args("w1") == ["--nats-creds", str(server.fleet / "w1.nk")]  # type: ignore[operator]
    init_fleet(tmp_path / "again", ["c"], ["w"], [])
    with pytest.raises(Exception, match="already there"):
        init_fleet(tmp_path / "again", ["c"], ["w"], [])


def test_a_start_that_fails_after_the_claim_leaves_nothing(tmp_path: Path) -> None:
    """The claim taken, the worktree made, then the repo's claim script fails: the claim is
    released, the worktree and branch this request made are removed, the worker goes on."""
    repos = origin_with_clones(tmp_path, "w1", files={
        "gaps.yaml": BACKLOG, "scripts/gap-claim.sh": "echo 'claim: refused by policy' >&2\n"
                                                      "exit 3\n"})
    here = str(repos["origin"])
    with nats_server(tmp_path) as server:
        worker = start_worker(server.url, repos["w1"], "w1", fleet_env(tmp_path))
        tester = server.client("tester")
        tester.publish(wire.dispatch_subject(wire.repo_key(here)),
                       request(wire.repo_key(here), here))
        wait_for(lambda: "refused FLEET-001" in worker.output(), 60, "the failed start")
        assert "refused by policy" in worker.output() and worker.process.poll() is None
        assert tester.claims() == {}
        assert git(repos["w1"], "branch", "--list", "claude/*").strip() == ""
        assert not (repos["w1"] / ".claude" / "worktrees" / "fleet-001").exists()
        tester.close()
        worker.stop()


def test_an_offset_far_past_what_arrived_is_refused(tmp_path: Path) -> None:
    from chump_tui.fleet.remote import MAX_OUTPUT_GAP, FleetClient

    client = FleetClient(object(), "git@h:o/r", "s")  # type: ignore[arg-type]
    mirror = tmp_path / "mirror.log"
    agent = client.attach("u1", "w1", "w1", 4242, None, mirror, 0)
    agent.feed(wire.AgentReport(kind="output", uid="u1", worker="w1", host="w1", offset=0,
                                data=b"one\n"))
    agent.feed(wire.AgentReport(kind="output", uid="u1", worker="w1", host="w1",
                                offset=4 + MAX_OUTPUT_GAP + 1, data=b"absurd\n"))
    agent.feed(wire.AgentReport(kind="output", uid="u1", worker="w1", host="w1", offset=4,
                                data=b"two\n"))
    assert mirror.read_bytes() == b"one\ntwo\n" and client.dropped == 1
    assert "past what arrived" in client.last_drop
