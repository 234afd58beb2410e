"""Parse the backlog in a forked child while the parent imports Textual.

The console's start-up is dominated by two CPU-bound steps that cannot overlap in
one process (PyYAML's C loader holds the GIL): importing Textual and parsing the
backlog. Forking before either starts lets them run on two cores; the child sends
the parsed Backlog (or its BacklogError) back as a pickle. Where fork is not
available or anything goes wrong, the parent simply parses it itself.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

from chump_tui.backlog import Backlog, load_backlog
from chump_tui.errors import BacklogError


class BacklogPreload:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid: int | None = None
        self._read_fd: int | None = None
        if not hasattr(os, "fork"):
            return
        try:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
        except OSError:
            return
        if pid == 0:  # child: parse, send, leave without running any parent clean-up
            os.close(read_fd)
            try:
                try:
                    payload: object = load_backlog(path)
                except BacklogError as exc:
                    payload = exc
                data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as out:
                    out.write(data)
            finally:
                os._exit(0)
        os.close(write_fd)
        self._pid, self._read_fd = pid, read_fd

    def result(self) -> Backlog:
        """The parsed backlog; raises BacklogError exactly as load_backlog would."""
        if self._read_fd is None:
            return load_backlog(self.path)
        try:
            with os.fdopen(self._read_fd, "rb") as inp:
                data = inp.read()
            payload = pickle.loads(data) if data else None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            payload = None
        finally:
            self._read_fd = None
            if self._pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self._pid, 0)
        if isinstance(payload, BacklogError):
            raise payload
        if isinstance(payload, Backlog):
            return payload
        return load_backlog(self.path)  # the child failed in an unexpected way
