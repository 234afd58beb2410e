"""Worktree and branch names for a gap, and the check that keeps ids safe.

slug = lowercase id with ``_`` -> ``-``; worktree ``<root>/.claude/worktrees/<slug>``;
branch ``claude/<slug>``. Only the slug is lowercased, never the repo root.
"""

from __future__ import annotations

import re
from pathlib import Path

# Conservative: a subset of what `git check-ref-format` accepts and of what is
# safe as one path component, so an id can never climb out of the worktrees dir.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def slug(gap_id: str) -> str:
    return gap_id.lower().replace("_", "-")


def unsafe_id_reason(gap_id: str) -> str | None:
    """None when the id may become a path and branch, else why it may not."""
    if not _SAFE_ID.fullmatch(gap_id):
        return "id not usable as a branch (letters, digits, . _ - only)"
    if ".." in gap_id or gap_id.endswith((".", ".lock")):
        return "id not usable as a branch name"
    return None


def dispatch_paths(repo_root: Path, gap_id: str) -> tuple[Path, str]:
    """(worktree path, branch name) for a gap, exactly as the reference derives them."""
    s = slug(gap_id)
    return repo_root / ".claude" / "worktrees" / s, f"claude/{s}"
