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
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="reflection-writer", daemon=True)
        self._thread.start()

    def put(self, key: str, reflection: DispatchReflection) -> None:
        with self._cond:
            self._pending.append(_Pending(key, reflection))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._busy else 0)

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
                item = self._next_due()
                while item is None:
                    if self._stopping:
                        return
                    self._cond.wait(self._wait_s())
                    item = self._next_due()
                self._pending.remove(item)
                self._busy = True
            error = ""
            try:
                self.writer.write(item.reflection)
            except Exception as exc:  # any writer failure is retried, never fatal
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._busy = False
                if error:
                    item.last_error = error
                    item.next_try = time.monotonic() + item.backoff
                    item.backoff = min(item.backoff * 2, MAX_BACKOFF_S)
                    self._pending.append(item)
                self._cond.notify_all()
            if error:
                self._on_failed(item.key, error)
            else:
                self._on_written(item.key)

    def _next_due(self) -> _Pending | None:
        now = time.monotonic()
        due = [p for p in self._pending if p.next_try <= now]
        return min(due, key=lambda p: p.next_try) if due else None

    def _wait_s(self) -> float:
        if not self._pending:
            return 1.0
        return max(0.01, min(p.next_try for p in self._pending) - time.monotonic())
