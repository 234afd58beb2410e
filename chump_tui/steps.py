"""Running an outside command (git, the claim script, gh) as a process group that a
timeout or a quit ends whole: nothing it started is left behind.

``subprocess.run(timeout=...)`` kills only the command itself; a claim script's
``sleep`` or a ``gh`` helper would survive it. Here each command leads its own
process group and the group is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


class StepCancelled(Exception):
    """The runner was cancelled (the console is quitting) while the command ran."""


class StepTimeout(Exception):
    pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class StepRunner:
    """Runs commands; ``cancel()`` ends the running ones and refuses new ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.cancelled = threading.Event()

    def run(self, argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None,
            timeout_s: float) -> subprocess.CompletedProcess[bytes]:
        """The finished command (any exit status). Raises StepTimeout, StepCancelled, OSError."""
        if self.cancelled.is_set():
            raise StepCancelled()
        full_env = dict(env if env is not None else os.environ)
        if cwd is not None:
            full_env["PWD"] = str(cwd)  # some tools trust $PWD over the working directory
        proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        with self._lock:
            self._running.add(proc)
        try:
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()
                raise StepTimeout() from None
        finally:
            with self._lock:
                self._running.discard(proc)
            _kill_group(proc)  # whatever it left running in its group
        if self.cancelled.is_set():
            raise StepCancelled()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            running = list(self._running)
        for proc in running:
            _kill_group(proc)
