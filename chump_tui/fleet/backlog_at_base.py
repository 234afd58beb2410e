"""The backlog as a worker's base ref has it: what a worker checks a request against.

A worker obeys a signed request only for a gap its own backlog holds and would pick, as
its fetched base (``origin/main``) has it, not as a request or a working tree says. The
backlog's files are taken out of git at that commit (``git archive``, into a temporary
directory, links and paths out of it refused by tarfile's ``data`` filter) and read with
the same loader as everywhere; the result is kept per commit.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from chump_tui.backlog import Backlog, load_backlog
from chump_tui.errors import ChumpError
from chump_tui.steps import StepCancelled, StepRunner, StepTimeout

DEFAULT_PATHS = (Path("docs") / "gaps", Path("docs") / "gaps.yaml")  # upstream's order
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
GIT_TIMEOUT_S = 60.0


class BacklogAtBase:
    """The worker's backlog at ``base_ref`` (re-read when the ref moves)."""

    def __init__(self, repo_root: Path, base_ref: str, path: Path | None,
                 environ: Mapping[str, str]) -> None:
        self.repo_root = repo_root
        self.base_ref = base_ref
        self.path = path  # relative to the repository; None: upstream's default
        self.environ = dict(environ)
        self._cached: tuple[str, Backlog] | None = None
        self._lock = threading.Lock()

    def get(self) -> Backlog:
        """ChumpError (one line) when the ref or the backlog cannot be read."""
        commit = self._git("rev-parse", "--verify", "--quiet", f"{self.base_ref}^{{commit}}")
        sha = commit.decode("ascii", errors="replace").strip()
        with self._lock:
            if self._cached is not None and self._cached[0] == sha:
                return self._cached[1]
        backlog = self._read(sha)
        with self._lock:
            self._cached = (sha, backlog)
        return backlog

    def _read(self, sha: str) -> Backlog:
        candidates = [self.path] if self.path is not None else list(DEFAULT_PATHS)
        for candidate in candidates:
            try:
                archive = self._git("archive", "--format=tar", sha, "--", candidate.as_posix())
            except ChumpError:
                continue  # not at that commit: the next default
            with tempfile.TemporaryDirectory(prefix="chump-tui-backlog-") as tmp:
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    tar.extractall(tmp, filter="data")
                loaded = load_backlog(Path(tmp) / candidate)
                return Backlog(candidate, loaded.gaps, loaded.warnings)
        shown = " or ".join(c.as_posix() for c in candidates)
        raise ChumpError(f"no backlog ({shown}) at {self.base_ref} ({sha[:12]})")

    def _git(self, *args: str) -> bytes:
        argv = ["git", "-C", str(self.repo_root), *args]
        try:
            done = StepRunner().run(argv, self.repo_root, self.environ, GIT_TIMEOUT_S)
        except (StepTimeout, StepCancelled, OSError) as exc:
            raise ChumpError(f"git {args[0]}: {exc}") from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise ChumpError(f"git {args[0]} failed: {err[-1] if err else done.returncode}")
        if len(done.stdout) > MAX_ARCHIVE_BYTES:
            raise ChumpError(f"git {args[0]}: more than {MAX_ARCHIVE_BYTES // 2**20} MiB")
        return done.stdout
