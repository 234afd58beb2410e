"""The prompt handed to a dispatched agent, and recovering the gap id from it."""

from __future__ import annotations

import re
from pathlib import Path

RULES_FILE = Path("docs") / "CHUMP_DISPATCH_RULES.md"
_GAP_MARKER = re.compile(r"working on gap (\S+?)\. The gap is already claimed")


def build_prompt(gap_id: str, repo_root: Path) -> str:
    """Dispatch rules (when the repo has them) + the reference's instruction."""
    try:
        rules = (repo_root / RULES_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        rules = ""
    rules_block = f"{rules}\n\n---\n\n" if rules else ""
    return (
        f"{rules_block}You are a Chump dispatched agent working on gap {gap_id}. "
        "The gap is already claimed in this worktree. "
        "Read the gap entry in docs/gaps.yaml for full acceptance criteria. "
        f"Do the work, then ship via:\n  scripts/bot-merge.sh --gap {gap_id} --auto-merge\n"
        "After ship, exit. Reply ONLY with the PR number."
    )


def parse_gap_id_from_prompt(prompt: str) -> str | None:
    """The id after ``working on gap ``, or None when the prompt lacks it.

    The last match wins: the rules block in front may quote the phrase too.
    """
    found = _GAP_MARKER.findall(prompt)
    return found[-1] if found else None
