#!/usr/bin/env python3
"""A stand-in ``claude -p … --output-format stream-json`` for engine tests: run in a worktree,
it speaks claude's stream-json (init with a session id, a tool call, a result with a cost)
and resumes a session with ``--resume ID`` as the real CLI does. (The real CLI is tested
too: tests/test_real_follow_ups.py.)

FAKE_CLAUDE_MODE (first run): ship (commit, gh pr create) | no_pr (commit, exit 0) | hang.
FAKE_CLAUDE_RESUME: what a resumed run does: commit (default) | hang | fail (exit 2).
FAKE_CLAUDE_RESUME_PR: a resumed run then sets its branch's PR to this state (MERGED…).
FAKE_CLAUDE_PROMPTS: a file every run's prompt is appended to (``=== run <session>`` first).
Each run costs $0.01 and reports 1,000 tokens in, 100 out, 2 turns.
"""

import json
import os
import subprocess
import sys
import time
import uuid

args = sys.argv[1:]
session = ""
prompt = None
i = 0
while i < len(args):
    if args[i] == "--resume":
        session = args[i + 1]
        i += 2
        continue
    if args[i] == "--output-format":
        i += 2
        continue
    if not args[i].startswith("-"):
        prompt = args[i]
    i += 1
if prompt is None:
    prompt = sys.stdin.read()
resumed = bool(session)
session = session or str(uuid.uuid4())
record = os.environ.get("FAKE_CLAUDE_PROMPTS")
if record:
    with open(record, "a", encoding="utf-8") as fh:
        fh.write(f"=== run {session} {'resumed' if resumed else 'first'}\n{prompt}\n")


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], capture_output=True, text=True, check=False).stdout


emit({"type": "system", "subtype": "init", "session_id": session, "model": "claude-fake-1",
      "cwd": os.getcwd(), "tools": ["Bash"]})
mode = os.environ.get("FAKE_CLAUDE_RESUME", "commit") if resumed else \
    os.environ.get("FAKE_CLAUDE_MODE", "ship")
if mode == "hang":
    emit({"type": "assistant", "session_id": session, "message": {
        "id": f"msg_{uuid.uuid4().hex[:8]}", "role": "assistant", "model": "claude-fake-1",
        "content": [{"type": "text", "text": "working on it"}],
        "usage": {"input_tokens": 10, "output_tokens": 1}}})
    time.sleep(3600)
if mode == "fail":
    print("ERROR: the resumed run fell over", file=sys.stderr)
    sys.exit(2)
name = f"run-{'resumed' if resumed else 'first'}-{uuid.uuid4().hex[:6]}.txt"
with open(name, "w", encoding="utf-8") as fh:
    fh.write(prompt[-200:])
git("add", name)
git("commit", "-qm", f"work: {name}")
tool = f"toolu_{uuid.uuid4().hex[:8]}"
emit({"type": "assistant", "session_id": session, "message": {
    "id": f"msg_{uuid.uuid4().hex[:8]}", "role": "assistant", "model": "claude-fake-1",
    "content": [{"type": "tool_use", "id": tool, "name": "Bash",
                 "input": {"command": f"git commit -m {name}"}}],
    "usage": {"input_tokens": 500, "output_tokens": 50}}})
emit({"type": "user", "session_id": session, "message": {"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": tool, "content": "committed", "is_error": False}]}})
if mode == "ship":
    subprocess.run(["gh", "pr", "create", "--fill"], capture_output=True, check=False)
elif resumed and os.environ.get("FAKE_CLAUDE_RESUME_PR"):  # its fix made the PR go this way
    branch = git("rev-parse", "--abbrev-ref", "HEAD").strip()
    with open(os.environ["STUB_GH_STATE"], "a", encoding="utf-8") as fh:
        fh.write(f"{branch} {os.environ['FAKE_CLAUDE_RESUME_PR']} @{time.time():.0f}\n")
emit({"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
      "result": "done", "session_id": session, "total_cost_usd": 0.01,
      "usage": {"input_tokens": 1000, "output_tokens": 100}})
