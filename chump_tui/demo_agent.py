"""A simulated agent for ``--demo``: a real process that talks on stderr and opens a PR.

Run as ``python -m chump_tui.demo_agent <GAP-ID> <scenario> <seconds> <github-state-file>``.
Scenarios: shipped, ci_failed, exit_fail, stall, dirty, flood. The "PR" is a line
appended to the simulated GitHub's state file: ``<branch> <STATE> [DIRTY]``.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from types import FrameType

PHASES = [
    "reading CLAUDE.md and the gap entry",
    "exploring src/ for the affected modules",
    "writing a failing test first",
    "implementing the change",
    "running cargo test -p chump-core",
    "WARN: flaky test retried (network timeout)",
    "fixing clippy lints",
    "committing with the dispatched identity",
    "pushing branch and opening PR via bot-merge.sh",
]


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def open_pr(state_file: str, branch: str, state: str, extra: str = "") -> None:
    with open(state_file, "a", encoding="utf-8") as fh:
        fh.write(f"{branch} {state} {extra}".rstrip() + "\n")


def ignore_term(signum: int, frame: FrameType | None) -> None:
    say("got SIGTERM but busy finishing a tool call; ignoring it")


def main(argv: list[str]) -> int:
    gap_id, scenario, seconds, state_file = argv[0], argv[1], float(argv[2]), argv[3]
    branch = "claude/" + gap_id.lower().replace("_", "-")
    rng = random.Random(gap_id)
    say(f"agent for {gap_id} starting ({scenario})")
    steps = max(3, int(seconds / 2))
    for i in range(steps):
        time.sleep(seconds / steps)
        if scenario == "flood":
            for j in range(200):
                say(f"[{gap_id}] compiling unit {i}.{j}")
        say(f"[{i + 1}/{steps}] {PHASES[min(i * len(PHASES) // steps, len(PHASES) - 1)]}")
        if rng.random() < 0.1:
            say("ERROR: transient tool failure, retrying")
        if scenario == "dirty" and i == steps // 2:
            open_pr(state_file, branch, "OPEN", "DIRTY")
            say("PR opened but main moved on: merge state DIRTY")
    if scenario == "exit_fail":
        say("PANIC: cannot build the workspace; giving up")
        return 1
    if scenario == "stall":
        # A stuck agent that shrugs off SIGTERM, so the grace period and SIGKILL show.
        signal.signal(signal.SIGTERM, ignore_term)
        say("waiting for a permission prompt that never comes ...")
        time.sleep(3600)
        return 0
    if scenario == "ci_failed":
        open_pr(state_file, branch, "CLOSED")
        say("FAIL: CI red on the PR; it was closed")
        return 0
    if scenario == "dirty":
        time.sleep(3600)
        return 0
    open_pr(state_file, branch, "MERGED")
    print("4242")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
