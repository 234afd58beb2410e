"""Branches an earlier run left behind: ``claude/<slug>`` already exists for a gap.

A branch our dispatch made is marked in git's config (``branch.<name>.chumpTui``). Left
by an earlier attempt of ours with no open PR, it is continued: the next dispatch works
in the same branch and worktree, its commits kept. With an open PR the gap is not picked
(the PR is the work); with a merged one it is not picked either (it shipped: a cron job
must not pay for it again), unless the operator asks for it. A branch we did not make is
never touched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from chump_tui.backlog import Gap
from chump_tui.paths import dispatch_paths, unsafe_id_reason

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see chump_tui.backlog)
if TYPE_CHECKING:
    from chump_tui.pr_providers import PrProvider, PrStatus

MARK = "chumpTui"  # git config: branch.<name>.chumpTui = the time we made it
GIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class Leftover:
    branch: str
    ours: bool
    pr: PrStatus | None  # its latest PR (None: none)
    pr_unknown: bool = False  # GitHub could not be asked

    @property
    def shipped(self) -> bool:
        return self.pr is not None and self.pr.state == "MERGED"

    def reason(self, include_shipped: bool = False) -> str | None:
        """Why the gap is not pickable, or None: it is continued on its branch.
        ``include_shipped``: the operator asked for shipped gaps too."""
        if self.shipped and not include_shipped:
            assert self.pr is not None
            return f"shipped in #{self.pr.number}"
        if not self.ours:
            return (f"branch {self.branch} exists (not ours): delete it (git branch -D "
                    f"{self.branch}) or adopt it (git config branch.{self.branch}.{MARK} "
                    "adopted)")
        if self.pr is not None and self.pr.state == "OPEN":
            return f"PR #{self.pr.number} is open on {self.branch} (the PR is the work)"
        if self.pr_unknown:
            return f"branch {self.branch} exists; whether a PR is open is unknown (gh failed)"
        return None

    def note(self) -> str:
        return f"continues its branch {self.branch} (commits kept)"


def git_lines(repo_root: Path, *args: str) -> list[str]:
    try:
        done = subprocess.run(["git", "-C", str(repo_root), *args], capture_output=True,
                              timeout=GIT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return done.stdout.decode("utf-8", errors="replace").splitlines()


def our_branches(repo_root: Path) -> set[str]:
    lines = git_lines(repo_root, "config", "--get-regexp", rf"^branch\..*\.{MARK.lower()}$")
    return {line.split(" ", 1)[0][len("branch."):-len(MARK) - 1] for line in lines}


def scan(repo_root: Path, gaps: Iterable[Gap],
         provider: Callable[[], PrProvider] | None = None
         ) -> tuple[dict[str, Leftover], str | None]:
    """Leftover branches by gap id, and an error when GitHub could not be asked (their
    PR states then unknown: such a branch is not continued). ``provider`` makes the PR
    provider; it is asked (one call) only when there are leftovers."""
    existing = set(git_lines(repo_root, "for-each-ref", "--format=%(refname:short)",
                             "refs/heads/claude/"))
    if not existing:
        return {}, None
    wanted = {g.id: dispatch_paths(repo_root, g.id)[1] for g in gaps
              if unsafe_id_reason(g.id) is None}
    found = {gid: branch for gid, branch in wanted.items() if branch in existing}
    if not found:
        return {}, None
    ours = our_branches(repo_root)
    prs: dict[str, PrStatus | None] = {}
    error = None
    if provider is not None:
        try:
            prs = provider().poll(sorted(set(found.values())))
        except Exception as exc:  # GitHub trouble: states unknown, never fatal
            error = str(exc)
    return {gid: Leftover(branch, branch in ours, prs.get(branch), error is not None)
            for gid, branch in found.items()}, error


def mark_ours(repo_root: Path, branch: str, when: str) -> None:
    git_lines(repo_root, "config", f"branch.{branch}.{MARK}", when)
