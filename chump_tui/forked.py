"""Run one function in a forked child while the parent carries on; get its result back.

Used where two CPU-bound steps would otherwise run one after the other on one core
(PyYAML's C loader holds the GIL, so threads do not help). The child pickles the
return value (or the exception) into a pipe. Without fork, with other threads
running (a fork then could copy a held lock), or if the child fails in any way,
the parent simply calls the function itself.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ForkedCall(Generic[T]):
    def __init__(self, fn: Callable[..., T], *args: object) -> None:
        self.fn = fn
        self.args = args
        self._pid: int | None = None
        self._read_fd: int | None = None
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return
        try:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
        except OSError:
            return
        if pid == 0:  # child: compute, send, leave without running the parent's clean-up
            os.close(read_fd)
            try:
                try:
                    payload: object = ("ok", fn(*args))
                except Exception as exc:  # sent back and re-raised in the parent
                    payload = ("raised", exc)
                with os.fdopen(write_fd, "wb") as out:
                    out.write(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
            finally:
                os._exit(0)
        os.close(write_fd)
        self._pid, self._read_fd = pid, read_fd

    def result(self) -> T:
        if self._read_fd is None:
            return self.fn(*self.args)
        payload: object = None
        try:
            with os.fdopen(self._read_fd, "rb") as inp:
                data = inp.read()
            if data:
                payload = pickle.loads(data)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            payload = None
        finally:
            self._read_fd = None
            if self._pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self._pid, 0)
        if isinstance(payload, tuple) and len(payload) == 2:
            kind, value = payload
            if kind == "raised" and isinstance(value, Exception):
                raise value
            if kind == "ok":
                return value  # type: ignore[no-any-return]
        return self.fn(*self.args)  # the child failed in an unexpected way
