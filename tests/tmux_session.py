"""A real terminal for tests: the console in a tmux pane on a private tmux server."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest


class TmuxPane:
    def __init__(self, width: int = 120, height: int = 40) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux not installed")
        self.socket = f"chump-test-{os.getpid()}-{time.monotonic_ns()}"
        self.width, self.height = width, height
        self.name = "t"

    def tmux(self, *args: str) -> str:
        # The server inherits our environment; COLUMNS/LINES (set by pytest's plugins) would
        # override the pane's real size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=20, check=False, env=env)
        return done.stdout

    def start(self, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        """A shell in a fresh pane; the test types its command with ``run``."""
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", self.name, "-x",
                  str(self.width), "-y", str(self.height), "-c", str(cwd), "sh")
        self.tmux("set-option", "-g", "set-clipboard", "on")  # OSC 52 would reach a buffer
        self.tmux("set-option", "-g", "allow-rename", "on")
        for key, value in (env or {}).items():
            self.tmux("set-environment", "-t", self.name, key, value)
            self.send(f"export {key}={shlex.quote(value)}", "Enter")

    def run(self, argv: list[str]) -> None:
        self.send(" ".join(shlex.quote(a) for a in argv), "Enter")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def capture(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def title(self) -> str:
        return self.tmux("display-message", "-p", "-t", self.name, "#{pane_title}").strip()

    def buffers(self) -> str:
        return self.tmux("list-buffers", "-F", "#{buffer_sample}")

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 20,
                 what: str = "") -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if condition(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")

    def close(self) -> None:
        self.tmux("kill-server")
