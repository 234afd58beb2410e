#!/usr/bin/env python3
"""Stub `gh` for tests: logs each call, answers `pr list --json` from a state file.

STUB_GH_STATE: file of lines "<branch> <STATE> [mergeStateStatus] [failed,check,names]";
               line i is PR 100+i; a token "@<epoch seconds>" anywhere on it is the PR's
               createdAt (without one, gh says nothing of when it was created).
STUB_GH_LOG:   every invocation's argv is appended here (one line per call).
STUB_GH_MODE:  "ok" (default) | "fail" (exit 1) | "garbage" (prints non-JSON) | "hang".
Each failed check links to an Actions run (900+i) and `gh run view RUN --log-failed` prints
STUB_GH_FAILED_LOG (a file) or a few lines naming the run; a PR's headRefOid is its branch's
commit in the repository gh runs in.
`gh pr create` (what a real agent runs) adds "<current branch> <STUB_GH_CREATE_STATE>" to the
state file (default MERGED: the merge queue is instant here) and prints the PR's URL.
"""
import json
import os
import sys
import time

log = os.environ.get("STUB_GH_LOG")
if log:
    with open(log, "a") as fh:
        fh.write(" ".join(sys.argv[1:]) + "\n")
mode = os.environ.get("STUB_GH_MODE", "ok")
if mode == "fail":
    print("HTTP 502: bad gateway (stub)", file=sys.stderr)
    sys.exit(1)
if mode == "garbage":
    print("<html>rate limited</html>")
    sys.exit(0)
if mode == "hang":
    time.sleep(3600)
if sys.argv[1:3] == ["pr", "create"]:
    import subprocess

    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    state_file = os.environ["STUB_GH_STATE"]
    with open(state_file, "a+") as fh:
        fh.seek(0)
        number = 100 + sum(1 for _ in fh)
        fh.write(f"{branch} {os.environ.get('STUB_GH_CREATE_STATE', 'MERGED')} "
                 f"@{time.time():.0f}\n")
    print(f"https://github.com/example/repo/pull/{number}")
    sys.exit(0)
if sys.argv[1:3] == ["run", "view"] and "--log-failed" in sys.argv:
    source = os.environ.get("STUB_GH_FAILED_LOG")
    if source:
        with open(source, encoding="utf-8") as fh:
            sys.stdout.write(fh.read())
    else:
        print(f"test\tRun tests\t2026-11-30T10:00:00Z FAILED tests/test_core.py::test_sum "
              f"(run {sys.argv[3]})\ntest\tRun tests\t2026-11-30T10:00:01Z "
              "AssertionError: assert 3 == 4")
    sys.exit(0)
if sys.argv[1:3] != ["pr", "list"]:
    print(f"stub gh: unsupported {sys.argv[1:]}", file=sys.stderr)
    sys.exit(2)
rows = []
state_file = os.environ.get("STUB_GH_STATE", "")
if state_file and os.path.exists(state_file):
    with open(state_file) as fh:
        for i, line in enumerate(fh):
            words = line.split()
            stamps = [w[1:] for w in words if w.startswith("@")]
            parts = [w for w in words if not w.startswith("@")]
            if len(parts) >= 2:
                checks = [{"__typename": "CheckRun", "name": name, "status": "COMPLETED",
                           "conclusion": "FAILURE",
                           "detailsUrl": "https://github.com/example/repo/actions/runs/"
                                         f"{900 + i}/job/1"} for name in parts[3].split(",")] \
                    if len(parts) > 3 else []
                row = {"number": 100 + i, "headRefName": parts[0], "state": parts[1],
                       "mergeStateStatus": parts[2] if len(parts) > 2 else "CLEAN",
                       "statusCheckRollup": checks}
                import subprocess

                head = subprocess.run(["git", "rev-parse", "--verify", "--quiet",
                                       f"refs/heads/{parts[0]}"], capture_output=True,
                                      text=True, check=False).stdout.strip()
                if head:
                    row["headRefOid"] = head
                if stamps:
                    row["createdAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                     time.gmtime(float(stamps[0])))
                rows.append(row)
rows.reverse()  # newest first, like gh
print(json.dumps(rows))
