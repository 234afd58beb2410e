"""A host's link to the broker that a test can cut without a reset and heal again.

Where the machine allows it (root, ``ip`` from iproute2, network namespaces), the host runs
in a network namespace of its own, joined to the test's by a veth pair: ``cut`` takes the
pair's end down (``ip link set … down``), so packets are dropped as in a real partition.
Elsewhere a TCP proxy between the host and the server stops passing bytes without closing
anything. Either way the test's code is the same, and it never skips.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
from typing import Protocol


class Link(Protocol):
    kind: str  # "netns" | "proxy"
    wrap: list[str]  # the host's command runs behind this (ip netns exec NAME)

    def url(self, port: int) -> str: ...
    def cut(self) -> None: ...
    def heal(self) -> None: ...
    def close(self) -> None: ...


class BlackholeProxy:
    """TCP between a client and the server that can stop passing bytes without closing
    anything: a link that drops silently (no reset), as a cut cable or a partition does."""

    kind = "proxy"

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.wrap: list[str] = []
        self.dropping = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, port: int) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.dropping.set()

    def heal(self) -> None:
        self.dropping.clear()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not self.dropping.is_set():
                try:
                    sink.sendall(data)
                except OSError:
                    return


class NamespaceLink:
    """A network namespace for one host, a veth pair to the test's namespace."""

    kind = "netns"

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100):02d}"
        self.name = f"chump-{tag}"
        self.outside = f"chv{tag}h"
        self.inside = f"chv{tag}w"
        net = random.randrange(1, 250)
        self.server_ip, host_ip = f"10.213.{net}.1", f"10.213.{net}.2"
        self.wrap = ["ip", "netns", "exec", self.name]
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.outside, "type", "veth", "peer", "name", self.inside],
            ["ip", "link", "set", self.inside, "netns", self.name],
            ["ip", "addr", "add", f"{self.server_ip}/30", "dev", self.outside],
            ["ip", "link", "set", self.outside, "up"],
            [*self.wrap, "ip", "addr", "add", f"{host_ip}/30", "dev", self.inside],
            [*self.wrap, "ip", "link", "set", self.inside, "up"],
            [*self.wrap, "ip", "link", "set", "lo", "up"],
        ]
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, timeout=20)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            self.close()
            raise

    def url(self, port: int) -> str:
        return f"nats://{self.server_ip}:{port}"

    def cut(self) -> None:
        subprocess.run(["ip", "link", "set", self.outside, "down"], check=True, timeout=20)

    def heal(self) -> None:
        subprocess.run(["ip", "link", "set", self.outside, "up"], check=True, timeout=20)

    def close(self) -> None:  # the veth pair goes with the namespace
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)


def namespaces_allowed() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def host_link(server_port: int) -> Link:
    """A namespace and veth pair where allowed (the server must listen on 0.0.0.0), else
    a proxy."""
    if namespaces_allowed():
        try:
            return NamespaceLink()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            pass  # no CAP_NET_ADMIN after all (a container): the proxy
    return BlackholeProxy(server_port)
