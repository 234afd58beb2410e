"""Finding the repository root: explicit ``--repo-root`` or ``git rev-parse``, canonicalised."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chump_tui.errors import ChumpError


def git_toplevel(cwd: Path | None = None) -> Path | None:
    """The enclosing git work tree's real path, or None outside one (or without git)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd,
                              capture_output=True, timeout=10, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    text = done.stdout.decode("utf-8", errors="replace").strip()
    return Path(text).resolve() if text else None


def backlog_base(explicit_root: Path | None) -> Path:
    """Where the default backlog is looked for: --repo-root, the git top level, else ."""
    if explicit_root is not None:
        return explicit_root
    return git_toplevel() or Path(".")


def resolve_repo_root(explicit: Path | None) -> Path:
    """Canonical repo root (real path, so a wrong-case path on macOS is fixed)."""
    if explicit is not None:
        if not explicit.is_dir():
            raise ChumpError(f"{explicit}: --repo-root is not a directory")
        return explicit.resolve()
    found = git_toplevel()
    if found is None:
        raise ChumpError("not inside a git repository; pass --repo-root PATH")
    return found
