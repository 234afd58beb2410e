"""The fleet and upstream (crate chump-coord) on one real nats-server: upstream's buckets
made with upstream's configuration whoever comes first, events on the lower-case subjects
upstream filters, claims released as upstream releases them; and a start that waits for a
broker that is not there yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chump_tui.fleet import wire
from tests.conftest import wait_for
from tests.fleet_rig import (
    NatsServer,
    make_fleet,
    member_args,
    member_env,
    nats_server,
    origin_with_clones,
)
from tests.partition import BlackholeProxy

# What upstream's client (async-nats create_key_value) asks the server for: the bucket's
# stream, field for field (durations in nanoseconds). The server answers error 10058 when
# a stream of that name exists with a different configuration.
UPSTREAM_CREATE = {
    "chump_gaps": {"history": 5, "max_age_s": 4 * 3600},
    "chump_workers": {"history": 4, "max_age_s": 300},
}


def upstream_create_request(bucket: str) -> bytes:
    spec = UPSTREAM_CREATE[bucket]
    max_age_ns = spec["max_age_s"] * 1_000_000_000
    return json.dumps({
        "name": f"KV_{bucket}", "subjects": [f"$KV.{bucket}.>"], "retention": "limits",
        "max_consumers": -1, "max_msgs": -1, "max_bytes": -1, "max_age": max_age_ns,
        "max_msgs_per_subject": spec["history"], "max_msg_size": -1, "storage": "file",
        "discard": "new", "num_replicas": 1,
        "duplicate_window": min(120_000_000_000, max_age_ns), "sealed": False,
        "deny_delete": True, "deny_purge": False, "allow_rollup_hdrs": True,
        "allow_direct": True, "mirror_direct": False,
    }).encode()


def test_upstream_can_create_the_buckets_we_made_and_we_bind_to_its_own(
        tmp_path: Path) -> None:
    with nats_server(tmp_path) as server:
        ours = server.client("tester")  # connecting makes the buckets (we came first)
        try:
            for bucket in UPSTREAM_CREATE:
                info = ours.run(ours.js.stream_info(f"KV_{bucket}"))
                assert info.config.max_msgs_per_subject == UPSTREAM_CREATE[bucket]["history"]
                assert info.config.max_age == UPSTREAM_CREATE[bucket]["max_age_s"]
                answer = ours.run(ours.nc.request(f"$JS.API.STREAM.CREATE.KV_{bucket}",
                                                  upstream_create_request(bucket), timeout=5))
                said = json.loads(answer.data)
                assert "error" not in said, (bucket, said)  # not 10058: upstream connects
        finally:
            ours.close()


def test_our_events_reach_upstreams_lower_case_kind_filter(tmp_path: Path) -> None:
    with nats_server(tmp_path) as server:
        client = server.client("tester")
        try:
            got: list[str] = []

            async def subscribe() -> object:
                async def on_message(msg: object) -> None:
                    got.append(msg.subject)  # type: ignore[attr-defined]

                return await client.nc.subscribe("chump.events.done", cb=on_message)

            client.run(subscribe())
            client.publish(wire.event_subject("DONE"),
                           wire.coord_event("DONE", "s1", gap="G-1", reason="PR #1 merged"))
            wait_for(lambda: got == ["chump.events.done"], 10, "upstream's filter sees it")
            stored = client.run(client.js.stream_info(wire.EVENTS_STREAM))
            assert stored.config.max_age == 24 * 3600  # kept as long as upstream keeps them
        finally:
            client.close()


def test_a_released_claim_is_purged_as_upstream_releases_it(tmp_path: Path) -> None:
    with nats_server(tmp_path) as server:
        client = server.client("tester")
        try:
            client.claim("G-9", wire.Claim("chump-tui:abc", wire.rfc3339()))
            assert client.release("G-9", "chump-tui:abc")
            kv = client._kv[client.gap_bucket]

            async def history() -> int:
                try:
                    return len(await kv.history(wire.gap_key("G-9")))
                except Exception:  # nats-py: no history left at all
                    return 0

            assert client.run(history()) <= 1  # a purge leaves one marker, no old values
            assert client.claim_of("G-9") is None
        finally:
            client.close()


def test_a_worker_started_before_its_broker_waits_for_it_and_says_so(tmp_path: Path) -> None:
    repos = origin_with_clones(tmp_path, "w1", files={"gaps.yaml": "gaps: []\n"})
    fleet = make_fleet(tmp_path / "fleet")
    server = NatsServer(tmp_path / "jetstream", fleet=fleet)
    from tests import fleet_rig

    fleet_rig.FLEETS.append(fleet)
    log = tmp_path / "worker.log"
    try:
        with log.open("w") as fh:
            worker = subprocess.Popen(
                [sys.executable, "-m", "chump_tui", "worker", "--nats", server.url,
                 "--repo-root", str(repos["w1"]), "--name", "w1", "--backlog", "gaps.yaml",
                 *member_args("w1")],
                env={**os.environ, **member_env(), "CHUMP_NATS_STARTUP_WAIT": "60"},
                stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        wait_for(lambda: "trying again" in log.read_text(), 20, "the worker says it waits")
        assert worker.poll() is None
        server.start()
        wait_for(lambda: "serving" in log.read_text(), 60, "the worker serves")
    finally:
        if "worker" in locals():
            worker.terminate()
            worker.wait(20)
        server.stop()
        fleet_rig.FLEETS.remove(fleet)
    assert "no NATS server answered" in log.read_text() or "cannot connect" in log.read_text()


def test_a_link_that_drops_silently_is_noticed_in_seconds(tmp_path: Path) -> None:
    from tests.fleet_rig import fleet_client

    with nats_server(tmp_path) as server:
        proxy = BlackholeProxy(server.port)
        client = fleet_client(f"nats://127.0.0.1:{proxy.port}", server.fleet)
        try:
            assert client.trouble() is None
            proxy.dropping.set()  # no FIN, no RST: only silence
            wait_for(lambda: client.trouble() is not None, 30,
                     "the lost link noticed by its pings")
            assert client.trouble().startswith("broker: reconnecting to nats://127.0.0.1:")
            proxy.dropping.clear()
            wait_for(lambda: client.trouble() is None, 30, "the link back")
        finally:
            client.close()
            proxy.listener.close()
