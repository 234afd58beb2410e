"""An attempt's patch against its base, file by file: what ``g`` on the monitor shows.

Read from the attempt's worktree (its commits and what it has not committed yet), or,
once the worktree is removed, from its branch in the repository. Bounded: a patch larger
than MAX_PATCH_BYTES is cut (said at its end). The text is someone else's: the viewer
shows it visibly, never as markup.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from chump_tui.outside_text import one_line

MAX_PATCH_BYTES = 4 * 1024 * 1024
GIT_TIMEOUT_S = 30


@dataclass
class PatchFile:
    path: str
    added: int = 0
    removed: int = 0
    lines: list[str] = field(default_factory=list)


@dataclass
class Patch:
    source: str  # what was compared, in words
    files: list[PatchFile]
    error: str = ""
    cut: bool = False

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)


def read_patch(repo_root: Path, worktree: str, branch: str, base: str) -> Patch:
    if worktree and os.path.isdir(worktree):
        argv = ["git", "-C", worktree, "diff", "--no-color", "--no-ext-diff", base]
        source = f"{branch} (its worktree, uncommitted changes too) against {base}"
    elif branch:
        argv = ["git", "-C", str(repo_root), "diff", "--no-color", "--no-ext-diff",
                f"{base}...{branch}"]
        source = f"{branch} (worktree removed: its commits) against {base}"
    else:
        return Patch("", [], "this attempt has no branch")
    try:
        done = subprocess.run(argv, capture_output=True, timeout=GIT_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Patch(source, [], f"git diff took more than {GIT_TIMEOUT_S}s")
    except OSError as exc:
        return Patch(source, [], f"cannot run git: {exc.strerror or exc}")
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return Patch(source, [], one_line(said[-1] if said else f"git exit {done.returncode}",
                                          300))
    data = done.stdout
    cut = len(data) > MAX_PATCH_BYTES
    return Patch(source, split_files(data[:MAX_PATCH_BYTES].decode("utf-8", errors="replace")),
                 cut=cut)


def split_files(text: str) -> list[PatchFile]:
    files: list[PatchFile] = []
    for line in text.splitlines():
        if line.startswith("diff --git "):
            path = line.split(" b/", 1)[-1] if " b/" in line else line[len("diff --git "):]
            files.append(PatchFile(path))
        if not files:
            continue
        current = files[-1]
        current.lines.append(line)
        if line.startswith("+") and not line.startswith("+++"):
            current.added += 1
        elif line.startswith("-") and not line.startswith("---"):
            current.removed += 1
    return files
