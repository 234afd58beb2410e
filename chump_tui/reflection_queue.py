"""Writes reflections off the monitor thread and retries failures with backoff.

An outcome is handed over once; the queue keeps it until the writer accepts
it (DB locked, read-only, missing dir: retried at 0.5 s doubling to 30 s), so
no outcome is lost and none is written twice from here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chump_tui.reflections import DispatchReflection, ReflectionWriter

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
BATCH_MAX = 200  # reflections written in one transaction


@dataclass
class _Pending:
    key: str
    reflection: DispatchReflection
    next_try: float = 0.0
    backoff: float = FIRST_BACKOFF_S
    last_error: str = ""


class ReflectionQueue:
    def __init__(
        self,
        writer: ReflectionWriter,
        on_written: Callable[[str], None],
        on_failed: Callable[[str, str], None],
    ) -> None:
        self.writer = writer
        self._on_written = on_written
        self._on_failed = on_failed
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = 0  # reflections being written now
        self._thread = threading.Thread(target=self._run, name="reflection-writer", daemon=True)
        self._thread.start()

    def put(self, key: str, reflection: DispatchReflection) -> None:
        with self._cond:
            self._pending.append(_Pending(key, reflection))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._busy

    def last_error(self) -> str:
        with self._cond:
            return next((p.last_error for p in self._pending if p.last_error), "")

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything is written (retrying now); False if time ran out."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            for p in self._pending:
                p.next_try = 0.0
            self._cond.notify_all()
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._due()
                while not batch:
                    if self._stopping:
                        return
                    self._cond.wait(self._wait_s())
                    batch = self._due()
                for item in batch:
                    self._pending.remove(item)
                self._busy = len(batch)
            error = ""
            try:
                self._write([item.reflection for item in batch])
            except Exception as exc:  # any writer failure is retried, never fatal
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._busy = 0
                if error:
                    for item in batch:
                        item.last_error = error
                        item.next_try = time.monotonic() + item.backoff
                        item.backoff = min(item.backoff * 2, MAX_BACKOFF_S)
                        self._pending.append(item)
                self._cond.notify_all()
            for item in batch:
                if error:
                    self._on_failed(item.key, error)
                else:
                    self._on_written(item.key)

    def _write(self, reflections: list[DispatchReflection]) -> None:
        """Everything due in one go where the writer can (one transaction), else in turn."""
        write_many = getattr(self.writer, "write_many", None)
        if write_many is not None:
            write_many(reflections)
            return
        for reflection in reflections:
            self.writer.write(reflection)

    def _due(self) -> list[_Pending]:
        now = time.monotonic()
        return sorted((p for p in self._pending if p.next_try <= now),
                      key=lambda p: p.next_try)[:BATCH_MAX]

    def _wait_s(self) -> float:
        if not self._pending:
            return 1.0
        return max(0.01, min(p.next_try for p in self._pending) - time.monotonic())
