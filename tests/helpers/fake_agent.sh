#!/bin/sh
# Fake agent: behaves like `claude -p <prompt> --dangerously-skip-permissions` run in a
# worktree. Writes stderr lines, commits a file, "opens and merges" its PR by writing
# to the stub gh state file, prints a PR number and exits.
# FAKE_AGENT_MODE: merge (default) | open | close | fail | hang | flood | slow (sleep, then merge)
#                  | escapes (terminal escape sequences on stderr, then merge)
#                  | commit_fail (commits, then exits 3 without a PR)
branch=$(git rev-parse --abbrev-ref HEAD)
echo "starting on $branch" >&2
echo "WARN: pretend warning from $branch" >&2
echo "args: $1 [prompt] $3" >&2
case "${FAKE_AGENT_MODE:-merge}" in
  fail) echo "ERROR: giving up" >&2; exit 3 ;;
  hang) trap '' TERM; sleep 3600 & wait; sleep 3600 ;;
  flood) i=0; while [ $i -lt 2000 ]; do echo "line $i from $branch" >&2; i=$((i+1)); done ;;
  slow) sleep "${FAKE_AGENT_SECONDS:-2}" ;;
  escapes) printf '\033]0;agent-pwned\007 \033[2J \033]52;c;cHduZWQ=\007 [/] done\n' >&2 ;;
esac
echo "work for $branch ($$)" >> agent-output.txt
git add agent-output.txt && git commit -qm "agent work" || exit 4
[ "${FAKE_AGENT_MODE:-}" = "commit_fail" ] && { echo "ERROR: failed after committing" >&2; exit 3; }
now="@$(date +%s)"  # the PR's createdAt
case "${FAKE_AGENT_MODE:-merge}" in
  open) echo "$branch OPEN DIRTY $now" >> "$STUB_GH_STATE" ;;
  close) echo "$branch CLOSED $now" >> "$STUB_GH_STATE" ;;
  *) echo "$branch MERGED $now" >> "$STUB_GH_STATE" ;;
esac
echo "101"
