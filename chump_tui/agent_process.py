"""One agent subprocess: its own process group, live output capture, group kill.

Reader threads decode stdout/stderr line by line (invalid UTF-8 replaced,
over-long lines cut), keep a bounded tail for the UI, keep the last 64
WARN/ERROR/FAIL/PANIC stderr lines for the reflection notes, append to an
optional per-attempt log file, and call ``on_line`` for every line.
Nothing here blocks the caller: ``terminate_group`` runs the grace period on
its own thread when asked to.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

STDERR_TAIL_CAP = 64
"""Lines of WARN/ERROR/FAIL/PANIC kept for the reflection notes (the reference's cap)."""

LIVE_TAIL_CAP = 400
"""Lines of recent output kept in memory for the live view."""

MAX_LINE_BYTES = 8192
"""A longer line is split; a flood without newlines cannot grow memory."""

LOG_CAP_BYTES = 8 * 1024 * 1024
"""Per-attempt log file cap; past it only a truncation marker is written once."""

_SIGNAL_WORDS = ("ERROR", "WARN", "FAIL", "PANIC")

LineCallback = Callable[[str, str], None]
"""Called as ``on_line(stream, line)`` from a reader thread."""


def is_signal_line(line: str) -> bool:
    upper = line.upper()
    return any(word in upper for word in _SIGNAL_WORDS)


class OutputLog:
    """Bounded in-memory record of an agent's output, shared by readers and viewers."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=LIVE_TAIL_CAP)
        self._signals: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_CAP)
        self.lines_seen = 0
        self._log_path = log_path
        self._log_file: IO[bytes] | None = None
        self._log_bytes = 0
        self._log_capped = False
        if log_path is not None:
            with contextlib.suppress(OSError):
                log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log_file = open(log_path, "ab", buffering=0)  # noqa: SIM115
                os.chmod(log_path, 0o600)

    def add(self, stream: str, line: str) -> None:
        with self._lock:
            self.lines_seen += 1
            shown = line if stream == "stderr" else f"[out] {line}"
            self._tail.append(shown)
            if stream == "stderr" and is_signal_line(line):
                self._signals.append(line)
            tag = "E" if stream == "stderr" else "O"
            self._write_log(f"{tag} {line}\n".encode())

    def _write_log(self, data: bytes) -> None:
        if self._log_file is None or self._log_capped:
            return
        try:
            if self._log_bytes + len(data) > LOG_CAP_BYTES:
                self._log_file.write(b"... log capped; later lines kept only in memory\n")
                self._log_capped = True
                return
            self._log_file.write(data)
            self._log_bytes += len(data)
        except OSError:
            # Disk full or the file went away: keep the in-memory record, stop writing.
            self._log_capped = True

    def tail(self, n: int = LIVE_TAIL_CAP) -> list[str]:
        with self._lock:
            if n >= len(self._tail):
                return list(self._tail)
            return list(self._tail)[-n:]

    def signal_lines(self) -> list[str]:
        with self._lock:
            return list(self._signals)

    def close(self) -> None:
        with self._lock:
            if self._log_file is not None:
                with contextlib.suppress(OSError):
                    self._log_file.close()
                self._log_file = None


class AgentProcess:
    """A running agent (or one re-attached by pid + start time)."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes] | None,
        pid: int,
        output: OutputLog,
        start_time: float | None = None,
    ) -> None:
        self._popen = popen
        self.pid = pid
        self.output = output
        self.start_time = start_time if start_time is not None else _process_start_time(pid)
        self._exit_code: int | None = None
        self._readers: list[threading.Thread] = []

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        output: OutputLog,
        on_line: LineCallback | None = None,
    ) -> AgentProcess:
        """Start ``argv`` in a new session (own process group) with piped output."""
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        proc = cls(popen, popen.pid, output)
        for stream_name, stream in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            if stream is None:
                continue
            reader = threading.Thread(
                target=_read_lines,
                args=(stream, stream_name, output, on_line),
                name=f"agent-{popen.pid}-{stream_name}",
                daemon=True,
            )
            reader.start()
            proc._readers.append(reader)
        return proc

    @classmethod
    def attach(cls, pid: int, start_time: float, output: OutputLog) -> AgentProcess | None:
        """Re-attach to a live agent we did not start, if pid AND start time still match."""
        actual = _process_start_time(pid)
        if actual is None or abs(actual - start_time) > 1.0:
            return None
        return cls(None, pid, output, start_time=actual)

    def poll(self) -> int | None:
        """Exit code once ended, else None. Never blocks."""
        if self._exit_code is not None:
            return self._exit_code
        if self._popen is not None:
            code = self._popen.poll()
            if code is not None:
                # A signal death is reported as -N by Popen; the reference uses -1.
                self._exit_code = code if code >= 0 else -1
        elif not self._same_process_alive():
            # Not our child: the exit status is gone with it. Report a clean exit
            # and let the PR state and deadlines decide the outcome.
            self._exit_code = 0
        return self._exit_code

    def is_running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit up to ``timeout`` seconds; returns the code or None."""
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            return self.poll()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return self._exit_code

    def join_readers(self, timeout: float = 2.0) -> None:
        """Let the readers drain what the process wrote before it ended."""
        for reader in self._readers:
            reader.join(timeout)

    def signal_group(self, sig: int) -> None:
        """Signal the whole process group, falling back to the single pid."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(OSError):
                os.kill(self.pid, sig)

    def group_alive(self) -> bool:
        """True while any process of the agent's group is alive (zombies do not count)."""
        if self._popen is not None and self._popen.poll() is None:
            return True
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # killpg(0) also succeeds for zombies waiting to be reaped by init.
        return group_has_live_member(self.pid)

    def terminate_group(self, grace_s: float) -> int | None:
        """SIGTERM the group, wait up to ``grace_s``, then SIGKILL. Blocks the caller only."""
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.wait(min(0.05, max(0.0, deadline - time.monotonic()))) is not None and \
                    not self.group_alive():
                break
        if self.group_alive():
            self.signal_group(signal.SIGKILL)
        code = self.wait(5.0)
        gone_by = time.monotonic() + 5.0
        while self.group_alive() and time.monotonic() < gone_by:
            time.sleep(0.02)
        self.join_readers(1.0)
        return code

    def _same_process_alive(self) -> bool:
        actual = _process_start_time(self.pid)
        if actual is None:
            return False
        if self.start_time is not None and abs(actual - self.start_time) > 1.0:
            return False
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _read_lines(
    stream: IO[bytes], stream_name: str, output: OutputLog, on_line: LineCallback | None
) -> None:
    try:
        while True:
            raw = stream.readline(MAX_LINE_BYTES)
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            output.add(stream_name, line)
            if on_line is not None:
                on_line(stream_name, line)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def _process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def group_has_live_member(pgid: int) -> bool:
    """Any non-zombie process whose process group is ``pgid``."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False
