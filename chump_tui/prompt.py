"""The prompt handed to a dispatched agent, and recovering the gap id from it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from chump_tui.errors import DispatchError
from chump_tui.safe_fs import inside, read_regular_file

RULES_FILE = Path("docs") / "CHUMP_DISPATCH_RULES.md"
MAX_RULES_BYTES = 1024 * 1024
_GAP_MARKER = re.compile(r"working on gap (\S+?)\. The gap is already claimed")


def build_prompt(gap_id: str, repo_root: Path) -> str:
    """Dispatch rules (when the repo has them) + the reference's instruction.

    Raises DispatchError naming the rules file when it cannot be used: not a regular
    file, bigger than MAX_RULES_BYTES, or a link out of the repository (its contents
    would go to a model).
    """
    rules = read_rules(repo_root)
    rules_block = f"{rules}\n\n---\n\n" if rules else ""
    return (
        f"{rules_block}You are a Chump dispatched agent working on gap {gap_id}. "
        "The gap is already claimed in this worktree. "
        "Read the gap entry in docs/gaps.yaml for full acceptance criteria. "
        f"Do the work, then ship via:\n  scripts/bot-merge.sh --gap {gap_id} --auto-merge\n"
        "After ship, exit. Reply ONLY with the PR number."
    )


def read_rules(repo_root: Path) -> str:
    path = repo_root / RULES_FILE
    if not os.path.lexists(path):
        return ""
    if not inside(path, repo_root):
        raise DispatchError(f"{path}: links out of the repository; not read")
    try:
        data = read_regular_file(path, MAX_RULES_BYTES)
    except FileNotFoundError:  # a dangling link
        return ""
    except OSError as exc:
        raise DispatchError(f"{path}: cannot use the dispatch rules: "
                            f"{exc.strerror or exc}") from None
    # A NUL cannot be part of an argument: the agent would never start (Popen refuses).
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def parse_gap_id_from_prompt(prompt: str) -> str | None:
    """The id after ``working on gap ``, or None when the prompt lacks it.

    The last match wins: the rules block in front may quote the phrase too.
    """
    found = _GAP_MARKER.findall(prompt)
    return found[-1] if found else None
