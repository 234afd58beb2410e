"""One agent subprocess: its own process group, output to a log file we follow, group kill.

The agent's stdout and stderr go straight to its per-attempt log file (opened
O_APPEND by the child), never to a pipe we own, so an agent outlives a
console that crashes or is left behind, and a later console re-reads the same
record. One shared follower thread tails every agent's file (invalid UTF-8
replaced, over-long lines split) into an in-memory tail for the live view and
the last 64 WARN/ERROR/FAIL/PANIC lines for the reflection notes. The file is
capped: once it passes LOG_CAP_BYTES after being read, it is truncated to zero
(the child's O_APPEND writes then restart at the top), like logrotate's
copytruncate.
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

STDERR_TAIL_CAP = 64
"""Lines of WARN/ERROR/FAIL/PANIC kept for the reflection notes (the reference's cap)."""

LIVE_TAIL_CAP = 400
"""Lines of recent output kept in memory for the live view."""

MAX_LINE_BYTES = 8192
"""A longer line is split; a flood without newlines cannot grow memory."""

LOG_CAP_BYTES = 16 * 1024 * 1024
"""Per-attempt log file cap on disk."""

POLL_MIN_S = 0.1
POLL_MAX_S = 0.4
READ_CHUNK = 1024 * 1024

_SIGNAL_WORDS = ("ERROR", "WARN", "FAIL", "PANIC")

_SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
_MIN_SECRET_LEN = 8


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of secret-looking variables (OPENAI_API_KEY, GH_TOKEN, …), longest first."""
    found = {v for k, v in environ.items()
             if any(part in k.upper() for part in _SECRET_NAME_PARTS)
             and len(v) >= _MIN_SECRET_LEN}
    return sorted(found, key=len, reverse=True)


class Redactor:
    """Replaces secret values with ``***`` in every line we show or store."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, line: str) -> str:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, "***")
        return line


_REDACT = Redactor(secret_values(os.environ))


def redact(line: str) -> str:
    """Redact this process's secret environment values (agents inherit the same ones)."""
    return _REDACT(line)

LineCallback = Callable[[list[str]], None]
"""Called as ``on_lines(lines)`` from the follower thread, once per chunk read."""


def is_signal_line(line: str) -> bool:
    upper = line.upper()
    return any(word in upper for word in _SIGNAL_WORDS)


class OutputLog:
    """Bounded in-memory record of an agent's output, shared by the follower and viewers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=LIVE_TAIL_CAP)
        self._signals: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_CAP)
        self.lines_seen = 0

    def add(self, line: str) -> None:
        """Record one line (already redacted by the caller)."""
        self.add_many([line])

    def add_many(self, lines: list[str]) -> None:
        signals = [line for line in lines if is_signal_line(line)]
        with self._lock:
            self.lines_seen += len(lines)
            self._tail.extend(lines)
            self._signals.extend(signals)

    def tail(self, n: int = LIVE_TAIL_CAP) -> list[str]:
        with self._lock:
            if n >= len(self._tail):
                return list(self._tail)
            return list(self._tail)[-n:]

    def signal_lines(self) -> list[str]:
        with self._lock:
            return list(self._signals)


class LogFollower:
    """Tails one log file into an OutputLog until ``finished()`` is true and EOF is reached.

    Every follower is polled by one shared thread (``FOLLOWERS``): a hundred agents
    would otherwise mean a hundred threads taking turns at the GIL with the console's
    UI thread, and key presses waiting behind them.
    """

    def __init__(self, path: Path, output: OutputLog, on_line: LineCallback | None,
                 finished: Callable[[], bool], start_offset: int = 0) -> None:
        self.path = path
        self.output = output
        self.on_line = on_line
        self.finished = finished
        self.offset = start_offset
        self._partial = b""
        self._file: IO[bytes] | None = None
        self._stop = threading.Event()
        self.behind = False
        """The last read stopped at READ_CHUNK with more in the file."""
        self.done = threading.Event()
        """Set once the follower has read to the end (or was stopped) and closed the file."""

    def start(self) -> LogFollower:
        FOLLOWERS.add(self)
        return self

    def stop(self) -> None:
        self._stop.set()
        FOLLOWERS.wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the follower is done; False on timeout."""
        return self.done.wait(timeout)

    def drain(self) -> None:
        """Read whatever is in the file now (used once, without a thread, for ended agents)."""
        while self._read_available():
            pass
        self._flush_partial()
        self._close()

    def poll_once(self) -> tuple[bool, bool]:
        """One poll by the shared thread: (read something, finished for good)."""
        if self._stop.is_set():
            self._finish()
            return False, True
        ended = self.finished()  # asked before reading, so nothing written before the end is missed
        got = self._read_available()
        if ended and not got:
            self._flush_partial()
            self._finish()
            return False, True
        return got, False

    def _finish(self) -> None:
        self._close()
        self.done.set()

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _read_available(self) -> bool:
        # The file stays open between polls: with a hundred agents, reopening it on
        # every poll is most of a follower's cost.
        self.behind = False
        try:
            if self._file is None:
                self._file = open(self.path, "rb")  # noqa: SIM115 - closed in _close
            fh = self._file
            size = os.fstat(fh.fileno()).st_size
            if size < self.offset:  # truncated under us (by our cap or by hand)
                self.offset = 0
            if size == self.offset:
                return False
            fh.seek(self.offset)
            data = fh.read(READ_CHUNK)
            self.offset += len(data)
            self.behind = size > self.offset
        except OSError:
            self._close()
            return False
        if not data:
            return False
        self._emit_lines(data)
        if self.offset >= LOG_CAP_BYTES:
            self._cap()
        return True

    def _emit_lines(self, data: bytes) -> None:
        buf = self._partial + data
        cut = buf.rfind(b"\n")
        whole, self._partial = (buf[:cut], buf[cut + 1:]) if cut >= 0 else (b"", buf)
        raw_lines = whole.split(b"\n") if cut >= 0 else []
        while len(self._partial) > MAX_LINE_BYTES:
            raw_lines.append(self._partial[:MAX_LINE_BYTES])
            self._partial = self._partial[MAX_LINE_BYTES:]
        if any(len(raw) > MAX_LINE_BYTES for raw in raw_lines):
            raw_lines = [raw[i:i + MAX_LINE_BYTES] for raw in raw_lines
                         for i in range(0, max(len(raw), 1), MAX_LINE_BYTES)]
        self._deliver(raw_lines)

    def _flush_partial(self) -> None:
        if self._partial:
            self._deliver([self._partial])
            self._partial = b""

    def _deliver(self, raw_lines: list[bytes]) -> None:
        """Decode, redact and record a chunk at once: per-line Python work is what costs."""
        if not raw_lines:
            return
        text = redact(b"\n".join(raw_lines).decode("utf-8", errors="replace"))
        lines = [line.rstrip("\r") for line in text.split("\n")]
        self.output.add_many(lines)
        if self.on_line is not None:
            self.on_line(lines)

    def _cap(self) -> None:
        with contextlib.suppress(OSError):
            os.truncate(self.path, 0)
        self.offset = 0
        self._deliver([f"[chump-tui] log reached {LOG_CAP_BYTES // (1024 * 1024)} MiB on disk; "
                       "truncated (earlier lines stay in this view)".encode()])


class FollowerHub:
    """The one thread that polls every LogFollower: started with the first, idle when none.

    A round reads every file that grew. The next round starts at once only while a
    file has more than one read's worth waiting; otherwise after POLL_MIN_S while
    output flows (so a busy agent's lines arrive in batches, not one syscall each),
    backing off to POLL_MAX_S when all are quiet. A follower that raises is finished
    (its error is written into its own output) so the others go on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._followers: list[LogFollower] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, follower: LogFollower) -> None:
        with self._lock:
            self._followers.append(follower)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="log-followers",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        idle = POLL_MIN_S
        while True:
            with self._lock:
                current = list(self._followers)
            if not current:
                self._wake.wait(POLL_MAX_S)
                self._wake.clear()
                continue
            got_any = behind = False
            finished: list[LogFollower] = []
            for follower in current:
                try:
                    got, over = follower.poll_once()
                except Exception as exc:  # a bug in one must not silence a hundred
                    follower.output.add(f"[chump-tui] stopped following this log: {exc!r}")
                    follower._finish()
                    got, over = False, True
                got_any |= got
                behind |= follower.behind
                if over:
                    finished.append(follower)
            if finished:
                with self._lock:
                    self._followers = [f for f in self._followers if f not in finished]
            if behind:
                continue
            idle = POLL_MIN_S if got_any else min(POLL_MAX_S, idle * 1.5)
            self._wake.wait(idle)
            self._wake.clear()


FOLLOWERS = FollowerHub()
"""Shared by every agent of the process."""


class AgentProcess:
    """A running agent we started, or one re-attached by pid + start time."""

    def __init__(self, popen: subprocess.Popen[bytes] | None, pid: int,
                 start_time: float | None) -> None:
        self._popen = popen
        self.pid = pid
        self.start_time = start_time
        self._exit_code: int | None = None
        self.follower: LogFollower | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path,
              output: OutputLog, on_line: LineCallback | None = None) -> AgentProcess:
        """Start ``argv`` in a new session (own process group), output appended to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            offset = os.fstat(fd).st_size
            popen = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                     stdout=fd, stderr=fd, start_new_session=True)
        finally:
            os.close(fd)
        proc = cls(popen, popen.pid, _process_start_time(popen.pid))
        proc.follow(log_path, output, on_line, offset)
        return proc

    @classmethod
    def attach(cls, pid: int, start_time: float) -> AgentProcess | None:
        """Re-attach to a live agent only if pid AND start time match: a reused pid is not ours."""
        actual = _process_start_time(pid)
        if actual is None or abs(actual - start_time) > 1.0:
            return None
        proc = cls(None, pid, actual)
        return proc if proc._same_process_alive() else None

    def follow(self, log_path: Path, output: OutputLog, on_line: LineCallback | None,
               offset: int = 0) -> None:
        self.follower = LogFollower(log_path, output, on_line,
                                    lambda: self.poll() is not None, offset).start()

    def poll(self) -> int | None:
        """Exit code once ended, else None. Never blocks."""
        if self._exit_code is not None:
            return self._exit_code
        if self._popen is not None:
            code = self._popen.poll()
            if code is not None:
                # A signal death is -N from Popen; the reference reports -1.
                self._exit_code = code if code >= 0 else -1
        elif not self._same_process_alive():
            # Not our child: its exit status is gone with it. Report a clean exit and
            # let the PR state and the deadlines decide the outcome.
            self._exit_code = 0
        return self._exit_code

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit up to ``timeout`` seconds; the code, or None on timeout."""
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

    def join_output(self, timeout: float = 2.0) -> None:
        """Let the follower read what the process wrote before it ended."""
        if self.follower is not None:
            self.follower.join(timeout)

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
            left = max(0.0, deadline - time.monotonic())
            if self.wait(min(0.05, left)) is not None and not self.group_alive():
                break
        if self.group_alive():
            self.signal_group(signal.SIGKILL)
        code = self.wait(5.0)
        gone_by = time.monotonic() + 5.0
        while self.group_alive() and time.monotonic() < gone_by:
            time.sleep(0.02)
        self.join_output(1.0)
        return code

    def _same_process_alive(self) -> bool:
        actual = _process_start_time(self.pid)
        if actual is None:
            return False
        if self.start_time is not None and abs(actual - self.start_time) > 1.0:
            return False
        import psutil  # imported on first use, like below: the console starts faster

        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def read_log(path: Path, output: OutputLog) -> None:
    """Fill ``output`` from a log file once (an agent that ended while nobody watched)."""
    LogFollower(path, output, None, lambda: True).drain()


def _process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def group_has_live_member(pgid: int) -> bool:
    """Any non-zombie process whose process group is ``pgid``."""
    import psutil

    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False
