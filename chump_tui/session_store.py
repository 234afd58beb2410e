"""The session on disk: ``sessions/chump-tui/state.json`` and the one-console-per-repo lock.

The dispatch table is rewritten atomically on every change (temp file, fsync,
rename, fsync of the directory), so a crash at any moment leaves either the
previous table or the new one, never half of one. The lock is an ``flock`` on
``sessions/chump-tui/lock`` holding the owner's pid; the kernel drops it when
the owner dies, so a crashed console never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from chump_tui.dispatch_record import Dispatch
from chump_tui.errors import ChumpError

STATE_VERSION = 1


class SessionBusy(ChumpError):
    def __init__(self, directory: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{directory}: session held by {who} (another chump-tui in this repo)")
        self.pid = pid


class SessionStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_path = directory / "state.json"
        self.lock_path = directory / "lock"
        self.log_dir = directory / "logs"
        self._lock_file: IO[str] | None = None
        self.saves = 0

    # ------------------------------------------------------------------ lock
    def acquire(self) -> None:
        """Take the session lock or raise SessionBusy naming the holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the session
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            raise SessionBusy(self.directory, int(text) if text.isdigit() else None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        os.chmod(self.lock_path, 0o600)
        self._lock_file = fh

    def release(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
                self._lock_file.close()
            self._lock_file = None

    # ----------------------------------------------------------------- state
    def save(self, records: list[Dispatch]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"version": STATE_VERSION, "saved_at": time.time(), "pid": os.getpid(),
                   "dispatches": [r.to_json() for r in records]}
        tmp = self.state_path.with_name(f".state.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.saves += 1

    def load(self) -> tuple[list[Dispatch], str | None]:
        """The saved rows and a warning (a corrupt file is set aside, never trusted)."""
        try:
            raw = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], None
        except OSError as exc:
            return [], f"{self.state_path}: cannot read ({exc.strerror or exc})"
        try:
            data: Any = json.loads(raw)
            rows = [Dispatch.from_json(d) for d in data["dispatches"]]
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.state_path.with_name(f"state.corrupt-{int(time.time())}.json")
            with contextlib.suppress(OSError):
                os.replace(self.state_path, aside)
            return [], f"{self.state_path}: unreadable ({exc}); moved to {aside.name}"
        return rows, None

    def archive(self) -> Path | None:
        """Move a finished session's table aside so the next run starts a fresh one."""
        if not self.state_path.exists():
            return None
        target = self.state_path.with_name(time.strftime("state-%Y%m%d-%H%M%S.json"))
        os.replace(self.state_path, target)
        return target


def needs_resume(records: list[Dispatch]) -> bool:
    """A session is resumed while any agent may still run or any reflection is unwritten."""
    return any(r.active or (r.outcome is not None and not r.reflection_written) for r in records)
