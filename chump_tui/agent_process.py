"""One agent subprocess: its own process group, output to a log file we follow, group kill.

The agent's stdout and stderr go straight to its per-attempt log file (opened
O_APPEND by the child), never to a pipe we own, so an agent outlives a
console that crashes or is left behind, and a later console re-reads the same
record. One shared follower thread tails every agent's file (invalid UTF-8
replaced, over-long lines split) into an in-memory tail for the live view and
the last 64 WARN/ERROR/FAIL/PANIC lines for the reflection notes. While we
watch a live agent its file is capped: once it passes LOG_CAP_BYTES it is
truncated to zero (the child's O_APPEND writes then restart at the top), like
logrotate's copytruncate. Reading an ended agent's log never changes it, and no
log is opened through a symbolic link.
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
from typing import IO, TYPE_CHECKING, Any

from chump_tui import numbers
from chump_tui.activity import RUN_MARK, Activity, render
from chump_tui.agent_streams.decoder import StreamFormat, decode
from chump_tui.agent_streams.events import AgentEvent, PlainLine
from chump_tui.log_lines import Line, LineSplitter
from chump_tui.safe_fs import open_nofollow, real_dir

if TYPE_CHECKING:
    from chump_tui.watchdog import BusyProbe

STDERR_TAIL_CAP = 64
"""Lines of WARN/ERROR/FAIL/PANIC kept for the reflection notes (the reference's cap)."""

LIVE_TAIL_CAP = 400
"""Lines of recent output kept in memory for the live view."""

LOG_CAP_BYTES = 16 * 1024 * 1024
"""Per-attempt log file cap on disk."""

AGENT_PROGRAM_NAMES = frozenset({"node", "bun", "claude", "codex", "opencode", "gemini"})
"""Processes that are an agent CLI itself (claude and opencode are native binaries; codex is
a node launcher of a native binary; gemini is node starting node): stopped at once on a
kill. Their tools run under a shell."""

AGENT_MARKER = "CHUMP_TUI_AGENT"
"""Set in every agent's environment to its log path: a process that left the agent's group
(setsid) is still found, and ended with it."""

POLL_MIN_S = 0.1
POLL_MAX_S = 0.4
READ_CHUNK = 1024 * 1024
READ_LOG_TAIL = 8 * 1024 * 1024

_SIGNAL_WORDS = ("ERROR", "WARN", "FAIL", "PANIC")

LineCallback = Callable[[list[str]], None]
"""Called as ``on_lines(lines)`` from the follower thread, once per chunk read."""


def is_signal_line(line: str) -> bool:
    upper = line.upper()
    return any(word in upper for word in _SIGNAL_WORDS)


class OutputLog:
    """Bounded in-memory record of an agent's output, shared by the follower and viewers:
    the live tail, the signal ring for the reflection, and the agent's activity."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=LIVE_TAIL_CAP)
        self._signals: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_CAP)
        self.lines_seen = 0
        self.clock = clock
        self._activity = Activity()
        # A fleet host parses the agent's whole log and sends its activity in summaries:
        # what arrives here of the log then is only lines to show (a part of it).
        self.activity_from_host = False

    def add(self, line: str) -> None:
        """Record one line of our own (already redacted by the caller)."""
        self.add_many([line])

    def add_many(self, lines: list[str]) -> None:
        signals = [line for line in lines if is_signal_line(line)]
        with self._lock:
            self.lines_seen += len(lines)
            self._tail.extend(lines)
            self._signals.extend(signals)

    def record(self, events: list[AgentEvent]) -> list[str]:
        """Fold the agent's events into its activity and its lines; returns the new lines.

        An event that cannot be shown or counted is skipped with a note: one bad event
        never stops the agent being followed (nor its log being capped)."""
        lines: list[str] = []
        for event in events:
            try:
                lines += render(event)
            except Exception as exc:
                lines.append(skipped_note(event, exc))
        signals = [line for line in lines if is_signal_line(line)]
        now = self.clock()
        with self._lock:
            for event in events:
                if self.activity_from_host:
                    break
                if isinstance(event, PlainLine) and event.text.startswith(RUN_MARK):
                    self._activity = self._activity.next_run()  # a re-read log's next run
                    continue
                try:
                    self._activity.apply(event, now)
                except Exception as exc:
                    lines.append(skipped_note(event, exc))
            self.lines_seen += len(lines)
            self._tail.extend(lines)
            self._signals.extend(signals)
        return lines

    def apply_summary(self, activity: Activity, lines: list[str],
                      signals: list[str] | None = None) -> None:
        """A fleet host's summary of its agent: its activity now, new lines to show, and
        (its last) the signal lines of its whole log, which replace those seen here. A
        signal line already kept is not kept twice (a restarted worker says its agent's
        newest lines again)."""
        seen = [line for line in lines if is_signal_line(line)]
        with self._lock:
            self.activity_from_host = True
            self._activity = activity
            self.lines_seen += len(lines)
            self._tail.extend(lines)
            if signals:
                self._signals.clear()
                self._signals.extend(line for line in signals if is_signal_line(line))
            else:
                self._signals.extend(line for line in seen if line not in self._signals)

    def clear_tail(self, note: str) -> None:
        """The lines shown start over at ``note`` (a host's whole log follows from here)."""
        with self._lock:
            self._tail.clear()
            self._tail.append(note)
            self.lines_seen += 1

    def next_run(self, line: str) -> None:
        """The conversation's next run starts: ``line`` shown, the activity starts over."""
        with self._lock:
            self._activity = self._activity.next_run()
            self.lines_seen += 1
            self._tail.append(line)

    def compact(self, keep: int) -> None:
        """Keep only the last ``keep`` lines of an attempt that is over (its log file has
        them all): hours of continuous mode must not hold every attempt's tail."""
        with self._lock:
            if len(self._tail) > keep:
                self._tail = collections.deque(list(self._tail)[-keep:], maxlen=LIVE_TAIL_CAP)
            self._signals.clear()  # written into the reflection already
            self._activity.forget_details()

    def activity(self) -> Activity:
        """A consistent copy of what the agent is doing."""
        with self._lock:
            return self._activity.copy()

    def tail(self, n: int = LIVE_TAIL_CAP) -> list[str]:
        with self._lock:
            if n >= len(self._tail):
                return list(self._tail)
            return list(self._tail)[-n:]

    def signal_lines(self) -> list[str]:
        with self._lock:
            return list(self._signals)


def skipped_note(event: object, exc: BaseException) -> str:
    return f"[chump-tui] skipped a {type(event).__name__} event ({type(exc).__name__})"


class LogFollower:
    """Tails one log file into an OutputLog until ``finished()`` is true and EOF is reached.

    Every follower is polled by one shared thread (``FOLLOWERS``): a hundred agents
    would otherwise mean a hundred threads taking turns at the GIL with the console's
    UI thread, and key presses waiting behind them.
    """

    def __init__(self, path: Path, output: OutputLog, on_line: LineCallback | None,
                 finished: Callable[[], bool], start_offset: int = 0,
                 may_cap: bool = False, fmt: StreamFormat | None = None) -> None:
        self.path = path
        self.output = output
        self.on_line = on_line
        self.finished = finished
        self.offset = start_offset
        self.fmt = fmt
        self.may_cap = may_cap
        """Truncate at LOG_CAP_BYTES: only for the log of a live agent we started or re-attached."""
        self._splitter = LineSplitter(skip_first=start_offset > 0 and not may_cap)
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
                self._file = os.fdopen(open_nofollow(self.path, os.O_RDONLY), "rb")
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
        if self.may_cap and self.offset >= LOG_CAP_BYTES:
            self._cap()
        return True

    def _emit_lines(self, data: bytes) -> None:
        self._deliver(self._splitter.feed(data))

    def _flush_partial(self) -> None:
        self._deliver(self._splitter.flush())

    def _deliver(self, lines: list[Line]) -> None:
        """Decode and record a chunk at once: per-line Python work is what costs. A chunk
        that cannot be read is skipped with a note; the follower goes on (and the log cap
        is still enforced after it)."""
        if not lines:
            return
        try:
            shown = self.output.record(decode(lines, self.fmt))
        except Exception as exc:
            shown = [f"[chump-tui] skipped {len(lines)} line(s) it could not read "
                     f"({type(exc).__name__})"]
            self.output.add_many(shown)
        if self.on_line is not None and shown:
            self.on_line(shown)

    def _cap(self) -> None:
        with contextlib.suppress(OSError):
            os.truncate(self.path, 0)
        self.offset = 0
        note = (f"[chump-tui] log reached {LOG_CAP_BYTES // (1024 * 1024)} MiB on disk; "
                "truncated (earlier lines stay in this view)")
        self.output.add(note)
        if self.on_line is not None:
            self.on_line([note])


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
                 start_time: float | None, marker: str = "") -> None:
        self._popen = popen
        self.marker = marker  # AGENT_MARKER's value in the agent's environment
        self.pid = pid
        self.start_time = start_time
        self._exit_code: int | None = None
        self.follower: LogFollower | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path,
              output: OutputLog, on_line: LineCallback | None = None,
              fmt: StreamFormat | None = None, stdin_path: Path | None = None) -> AgentProcess:
        """Start ``argv`` in a new session (own process group), output appended to ``log_path``."""
        real_dir(log_path.parent)
        fd = open_nofollow(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            offset = os.fstat(fd).st_size
            stdin = (open_nofollow(stdin_path, os.O_RDONLY) if stdin_path is not None
                     else subprocess.DEVNULL)
            # The marker finds it again if it leaves the group. PWD: some CLIs (opencode) take
            # their project from $PWD, not the working directory: ours would be the repo root.
            env = {**env, AGENT_MARKER: str(log_path), "PWD": str(cwd)}
            try:
                popen = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=stdin,
                                         stdout=fd, stderr=fd, start_new_session=True)
            finally:
                if stdin_path is not None:
                    os.close(stdin)
        finally:
            os.close(fd)
        proc = cls(popen, popen.pid, _process_start_time(popen.pid), str(log_path))
        proc.follow(log_path, output, on_line, offset, fmt)
        return proc

    @classmethod
    def attach(cls, pid: int, start_time: float, marker: str = "") -> AgentProcess | None:
        """Re-attach to a live agent only if pid AND start time match: a reused pid is not ours."""
        if numbers.pid(pid) is None or numbers.timestamp(start_time) is None:
            return None  # -1 or 0 would name every process or our own group
        actual = _process_start_time(pid)
        if actual is None or abs(actual - start_time) > 1.0:
            return None
        proc = cls(None, pid, actual, marker)
        return proc if proc._same_process_alive() else None

    def follow(self, log_path: Path, output: OutputLog, on_line: LineCallback | None,
               offset: int = 0, fmt: StreamFormat | None = None) -> None:
        self.follower = LogFollower(log_path, output, on_line, lambda: self.poll() is not None,
                                    offset, may_cap=True, fmt=fmt).start()

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
        follower = self.follower
        if follower is not None and follower.join(timeout):
            self.follower = None  # done: nothing of it is needed any more

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

    def terminate_group(self, grace_s: float, stop_agent_first: bool = False) -> int | None:
        """SIGTERM the group and its strays, wait up to ``grace_s``, then SIGKILL.

        ``stop_agent_first`` (an agent CLI): the agent program itself is killed at once, so
        it sends no further model request and starts no further tool; the grace is for the
        tools it started (a build, a test run), which get SIGTERM and time to clean up.
        Strays are processes that left the group (``setsid``: a build daemon, a detached
        helper) but carry this agent's marker or descend from it. Blocks the caller only.
        """
        if stop_agent_first:
            _signal_all(self.agent_program(), signal.SIGKILL)
        strays = self.strays()
        self.signal_group(signal.SIGTERM)
        _signal_all(strays, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            left = max(0.0, deadline - time.monotonic())
            if self.wait(min(0.05, left)) is not None and not self.group_alive() \
                    and not _alive(strays):
                break
        if self.group_alive():
            self.signal_group(signal.SIGKILL)
        _signal_all(strays + self.strays(), signal.SIGKILL)
        code = self.wait(5.0)
        gone_by = time.monotonic() + 5.0
        while (self.group_alive() or _alive(strays)) and time.monotonic() < gone_by:
            time.sleep(0.02)
        self.join_output(1.0)
        return code

    def agent_program(self) -> list[Any]:
        """The agent CLI's own processes, not its tools: the group leader and, below it, the
        processes of the CLI itself (a launcher's native binary, node starting node). Tools
        run under a shell or as other programs, and are not followed into."""
        import psutil

        if self._popen is None and not self._same_process_alive():
            return []  # a re-attached pid that is not ours any more
        try:
            leader = psutil.Process(self.pid)
        except psutil.Error:
            return []
        program, frontier = [leader], [leader]
        while frontier:
            try:
                children = frontier.pop().children()
            except psutil.Error:
                continue
            for child in children:
                with contextlib.suppress(psutil.Error):
                    if child.name() in AGENT_PROGRAM_NAMES:
                        program.append(child)
                        frontier.append(child)
        return program

    def busy(self, probe: BusyProbe) -> bool:
        """Whether a process beneath it used CPU since the probe's last look."""
        return probe.busy(self.pid)

    def kill_now(self) -> None:
        """SIGKILL the group and its strays at once (a kill whose grace the operator cut)."""
        self.signal_group(signal.SIGKILL)
        _signal_all(self.strays(), signal.SIGKILL)

    def strays(self) -> list[Any]:
        """Processes of this agent outside its process group: its descendants now, and any
        process carrying its marker in the environment (a daemon that reparented to init)."""
        import psutil

        found: dict[int, Any] = {}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                found[child.pid] = child
        if self.marker:
            me = os.getpid()
            for proc in psutil.process_iter(["pid"]):
                if proc.pid in found or proc.pid in (me, self.pid):
                    continue
                try:
                    if proc.environ().get(AGENT_MARKER) == self.marker:
                        found[proc.pid] = proc
                except (psutil.Error, OSError):
                    continue
        out = []
        for proc in found.values():
            try:
                if os.getpgid(proc.pid) != self.pid:
                    out.append(proc)
            except OSError:
                continue
        return out

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


def read_log(path: Path, output: OutputLog, fmt: StreamFormat | None = None) -> None:
    """Fill ``output`` from the end of a log file once (an agent that ended unwatched).

    Read only: the file is never truncated. Only its last READ_LOG_TAIL bytes are read
    (the live tail and the signal ring keep the last lines anyway).
    """
    try:
        size = os.lstat(path).st_size
    except OSError:
        return
    LogFollower(path, output, None, lambda: True, max(0, size - READ_LOG_TAIL), fmt=fmt).drain()


def _signal_all(procs: list[Any], sig: int) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            proc.send_signal(sig)  # psutil refuses a pid reused since it was found


def _alive(procs: list[Any]) -> bool:
    import psutil

    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


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
