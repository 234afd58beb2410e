"""A simulated agent for ``--demo``: a real process in a real git worktree that speaks
claude's stream-json (tool calls, results, a final result with a cost) and "opens a PR".

Run as ``python -m chump_tui.demo_agent <GAP-ID> <scenario> <seconds> <github-state-file>
[<session>]``. Scenarios: shipped, ci_failed, exit_fail, stall (exits without a PR), quiet
(goes silent and shrugs off SIGTERM), dirty (its PR needs a rebase, then merges), flood, and
resumed (a follow-up: the session given goes on, commits, its PR merges). The "PR" is a line
appended to the simulated GitHub's state file: ``<branch> <STATE> [MERGE-STATE]``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from types import FrameType
from typing import Any

MODEL = "claude-demo-4"


class Agent:
    def __init__(self, gap_id: str, seconds: float, state_file: str, session: str = "") -> None:
        self.gap_id = gap_id
        self.branch = "claude/" + gap_id.lower().replace("_", "-")
        self.state_file = state_file
        self.rng = random.Random(gap_id + session)
        self.session = session or str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.pause = max(0.3, seconds / 10)
        self.turns = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.started = time.monotonic()

    def emit(self, event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def message(self, content: list[dict[str, Any]]) -> None:
        self.turns += 1
        tokens_in = 2000 + 1500 * self.turns + self.rng.randrange(500)
        tokens_out = 80 + self.rng.randrange(400)
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.emit({"type": "assistant", "session_id": self.session, "message": {
            "id": f"msg_{self.session[:8]}_{self.turns}", "role": "assistant", "model": MODEL,
            "content": content, "usage": {"input_tokens": tokens_in,
                                          "output_tokens": tokens_out}}})

    def tool(self, name: str, args: dict[str, Any], result: str, error: bool = False,
             seconds: float | None = None) -> None:
        tool_id = f"toolu_{self.session[:6]}_{self.turns}"
        self.message([{"type": "tool_use", "id": tool_id, "name": name, "input": args}])
        time.sleep(self.pause if seconds is None else seconds)
        self.emit({"type": "user", "session_id": self.session, "message": {
            "role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                         "content": result, "is_error": error}]}})

    def say(self, text: str) -> None:
        self.message([{"type": "text", "text": text}])
        time.sleep(self.pause / 2)

    def finish(self, ok: bool, text: str) -> None:
        cost = (self.tokens_in * 3 + self.tokens_out * 15) / 1_000_000
        self.emit({"type": "result", "subtype": "success", "is_error": not ok,
                   "duration_ms": int((time.monotonic() - self.started) * 1000),
                   "num_turns": self.turns, "result": text, "session_id": self.session,
                   "total_cost_usd": round(cost, 6),
                   "usage": {"input_tokens": self.tokens_in, "output_tokens": self.tokens_out}})

    def open_pr(self, state: str, merge_state: str = "CLEAN") -> None:
        with open(self.state_file, "a", encoding="utf-8") as fh:
            fh.write(f"{self.branch} {state} {merge_state}\n")

    def commit(self) -> str:
        path = f"notes/{self.gap_id.lower()}.md"
        os.makedirs("notes", exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"# {self.gap_id}\n\nSimulated work for the demo.\n")
        subprocess.run(["git", "add", path], capture_output=True, check=False)
        done = subprocess.run(["git", "commit", "-qm", f"{self.gap_id}: simulated work"],
                              capture_output=True, text=True, check=False)
        return "committed 1 file" if done.returncode == 0 else done.stderr.strip()


def ignore_term(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("got SIGTERM while a tool call runs; ignoring it\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    gap_id, scenario, seconds, state_file = argv[0], argv[1], float(argv[2]), argv[3]
    a = Agent(gap_id, seconds, state_file, argv[4] if len(argv) > 4 else "")
    a.emit({"type": "system", "subtype": "init", "session_id": a.session, "model": MODEL,
            "cwd": ".", "tools": ["Bash", "Read", "Edit", "Grep"]})
    if scenario == "resumed":
        a.say("Reading the follow-up; picking up where I left off.")
        a.tool("Edit", {"file_path": "src/dispatch.rs", "old_string": "b", "new_string": "c"},
               "The file src/dispatch.rs has been updated.")
        a.tool("Bash", {"command": "git commit -am 'follow-up'"}, a.commit())
        a.open_pr("MERGED")
        a.say("Done; the PR merged.")
        a.finish(True, "PR merged after the follow-up")
        return 0
    a.tool("Read", {"file_path": "docs/gaps.yaml"}, f"- id: {gap_id}\n  status: open")
    a.tool("Grep", {"pattern": "fn dispatch", "path": "src"}, "src/dispatch.rs:42")
    if scenario == "flood":
        for i in range(12):
            a.tool("Bash", {"command": f"cargo build -p unit-{i}"},
                   "\n".join(f"   Compiling unit-{i}-{j} v0.1.0" for j in range(200)))
    a.tool("Edit", {"file_path": "src/dispatch.rs", "old_string": "a", "new_string": "b"},
           "The file src/dispatch.rs has been updated.")
    if scenario == "quiet":
        # Stuck in a tool call that prints nothing and shrugs off SIGTERM: QUIET, then the
        # idle watchdog kills it (SIGTERM, the grace, SIGKILL).
        signal.signal(signal.SIGTERM, ignore_term)
        a.message([{"type": "tool_use", "id": "toolu_wait", "name": "Bash",
                    "input": {"command": "./scripts/wait-for-approval.sh"}}])
        time.sleep(3600)
        return 0
    if scenario == "exit_fail":
        a.tool("Bash", {"command": "cargo build --workspace"},
               "error[E0433]: failed to resolve: use of undeclared crate `tokio`", error=True)
        a.finish(False, "cannot build the workspace: a dependency is missing")
        return 1
    a.tool("Bash", {"command": "cargo test -p chump-core"}, "test result: ok. 42 passed",
           seconds=a.pause * 2)
    a.tool("Bash", {"command": "git commit -am 'work'"}, a.commit())
    if scenario == "stall":
        a.say("The gap needs a design decision I cannot make; stopping without a PR.")
        a.finish(True, "no PR: waiting for a human decision")
        return 0
    a.tool("Bash", {"command": f"scripts/bot-merge.sh --gap {gap_id} --auto-merge"},
           "PR opened; auto-merge enabled")
    if scenario == "ci_failed":
        a.open_pr("OPEN")
        a.tool("Bash", {"command": "gh pr checks"}, "FAIL: test (ubuntu-latest)", error=True)
        a.open_pr("CLOSED")
        a.finish(False, "CI failed on the PR; it was closed")
        return 0
    if scenario == "dirty":
        a.open_pr("OPEN", "DIRTY")
        a.say("main moved on; the PR needs a rebase (merge state DIRTY).")
        a.tool("Bash", {"command": "git rebase origin/main"}, "Successfully rebased.",
               seconds=a.pause * 4)
        a.open_pr("OPEN")
    a.open_pr("MERGED")
    a.say("Opened the PR; it merged.")
    a.finish(True, "PR merged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
