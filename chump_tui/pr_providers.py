"""Pull-request state per branch: GitHub via ONE ``gh`` call per poll, and test doubles.

A provider answers ``poll(branches)`` with the latest PR of every branch (or
None). ``GhPrProvider`` lists the repo's recent PRs once and matches them by
head branch, so 50 agents cost what 1 costs against the rate limit. A failed
or garbled answer raises ``PrProviderError``; the engine reports it and
retries next tick with the last known states.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from chump_tui import numbers
from chump_tui.errors import ChumpError
from chump_tui.log_lines import redact
from chump_tui.outside_text import visible_block
from chump_tui.steps import StepRunner, StepTimeout

GH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PrStatus:
    number: int
    state: str  # OPEN | CLOSED | MERGED
    merge_state_status: str = ""  # DIRTY means a rebase is needed
    failed_checks: tuple[str, ...] = ()  # names of its checks that failed (when gh says)
    created_at: float | None = None  # when it was opened (None: gh did not say)
    head_sha: str = ""  # the commit its checks ran on ('' : gh did not say)
    failed_runs: tuple[int, ...] = ()  # the Actions runs of its failed checks

    def opened_before(self, started_at: float) -> bool:
        """Opened before an attempt started, so not that attempt's PR. GitHub's clock and
        ours may disagree by a little; by more than CLOCK_SLACK_S, it is an earlier PR."""
        return self.created_at is not None and self.created_at < started_at - CLOCK_SLACK_S


CLOCK_SLACK_S = 120.0


class PrProviderError(ChumpError):
    """GitHub could not be asked, or answered something we cannot read."""


class PrProvider(Protocol):
    def poll(self, branches: Sequence[str]) -> dict[str, PrStatus | None]: ...


class GhPrProvider:
    """``gh pr list --state all`` once per poll, newest first, matched by head branch."""

    def __init__(self, repo_root: Path, gh: str = "gh", environ: Mapping[str, str] | None = None,
                 timeout_s: float = GH_TIMEOUT_S) -> None:
        self.repo_root = repo_root
        self.gh = gh
        self.environ = dict(environ) if environ is not None else None
        self.timeout_s = timeout_s
        self._steps = StepRunner()

    def poll(self, branches: Sequence[str]) -> dict[str, PrStatus | None]:
        if not branches:
            return {}
        # Our branches' PRs are among the newest; leave generous room for others' PRs.
        limit = min(1000, 100 + 4 * len(branches))
        fields = ("number,state,mergeStateStatus,headRefName,headRefOid,statusCheckRollup,"
                  "createdAt")
        argv = [self.gh, "pr", "list", "--state", "all", "--json", fields, "--limit", str(limit)]
        try:
            done = self._steps.run(argv, self.repo_root, self.environ, self.timeout_s)
        except StepTimeout:  # its whole process group is gone too
            raise PrProviderError(f"gh pr list timed out after {self.timeout_s:.0f}s") from None
        except FileNotFoundError:
            raise PrProviderError(f"{self.gh} not found: install GitHub's CLI "
                                  "(https://cli.github.com) and run `gh auth login`") from None
        except OSError as exc:
            raise PrProviderError(f"cannot run {self.gh}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise PrProviderError(
                f"gh pr list failed (exit {done.returncode}): {err[-1] if err else 'no output'}"
            )
        return match_branches(parse_pr_list(done.stdout), branches)

    def failed_log(self, run_id: int) -> str:
        """The last FAILED_LOG_BYTES of a run's failed steps (``gh run view RUN
        --log-failed``: one call per failed run), secrets redacted, control characters shown
        as symbols; '' when gh could not say."""
        argv = [self.gh, "run", "view", str(run_id), "--log-failed"]
        try:
            done = self._steps.run(argv, self.repo_root, self.environ, self.timeout_s)
        except (StepTimeout, OSError):
            return ""
        if done.returncode != 0:
            return ""
        return clip_log(done.stdout)


def parse_pr_list(stdout: bytes) -> list[tuple[str, PrStatus]]:
    """(headRefName, status) pairs from ``gh pr list --json`` output."""
    try:
        rows = json.loads(stdout.decode("utf-8", errors="replace") or "[]")
    except ValueError as exc:
        raise PrProviderError(f"gh pr list printed something that is not JSON ({exc})") from None
    if not isinstance(rows, list):
        raise PrProviderError("gh pr list JSON is not a list")
    out: list[tuple[str, PrStatus]] = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        number = numbers.pr_number(row.get("number"))
        state, head = row.get("state"), row.get("headRefName")
        if number is None or not isinstance(state, str) or not isinstance(head, str):
            continue
        merge = row.get("mergeStateStatus")
        sha = row.get("headRefOid")
        rollup = row.get("statusCheckRollup")
        out.append((head, PrStatus(number, state.upper(), merge if isinstance(merge, str) else "",
                                   failed_checks(rollup), iso_time(row.get("createdAt")),
                                   sha if isinstance(sha, str) and _SHA.fullmatch(sha) else "",
                                   failed_runs(rollup))))
    return out


_SHA = re.compile(r"[0-9a-f]{7,64}")
_RUN_URL = re.compile(r"/actions/runs/(\d{1,19})(?:/|$)")
MAX_FAILED_RUNS = 5
FAILED_LOG_BYTES = 4096


def failed_runs(rollup: object) -> tuple[int, ...]:
    """The Actions run ids of failed check runs (from their ``detailsUrl``), at most
    MAX_FAILED_RUNS: a repair prompt carries a few logs, not a matrix of fifty."""
    if not isinstance(rollup, list):
        return ()
    runs: list[int] = []
    for check in rollup:
        if not isinstance(check, dict):
            continue
        verdict = check.get("conclusion") or check.get("state")
        url = check.get("detailsUrl")
        if not (isinstance(verdict, str) and verdict.upper() in _FAILED and isinstance(url, str)):
            continue
        match = _RUN_URL.search(url[:500])
        run = numbers.int_in(int(match.group(1)), 1, 2**63 - 1) if match else None
        if run is not None and run not in runs:
            runs.append(run)
    return tuple(runs[:MAX_FAILED_RUNS])


def clip_log(data: bytes, limit: int = FAILED_LOG_BYTES) -> str:
    """The last ``limit`` bytes of a log as safe text: redacted, no control sequences."""
    text = data[-limit:].decode("utf-8", errors="replace")
    if len(data) > limit:  # the first line is likely cut: drop it
        text = text.partition("\n")[2]
    return "\n".join(visible_block(redact(line)) for line in text.splitlines())


def iso_time(value: object) -> float | None:
    """``2026-11-30T10:00:00Z`` as seconds since the epoch; None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return numbers.timestamp(when.timestamp())


_FAILED = {"FAILURE", "ERROR", "TIMED_OUT", "CANCELLED", "ACTION_REQUIRED", "STARTUP_FAILURE"}


def failed_checks(rollup: object) -> tuple[str, ...]:
    """Names of failed checks in gh's ``statusCheckRollup`` (check runs and status contexts)."""
    if not isinstance(rollup, list):
        return ()
    names = []
    for check in rollup:
        if not isinstance(check, dict):
            continue
        verdict = check.get("conclusion") or check.get("state")
        name = check.get("name") or check.get("context")
        if isinstance(verdict, str) and verdict.upper() in _FAILED and isinstance(name, str):
            names.append(name)
    return tuple(dict.fromkeys(names))


def match_branches(
    prs: list[tuple[str, PrStatus]], branches: Sequence[str]
) -> dict[str, PrStatus | None]:
    """Latest (highest-numbered) PR per watched branch."""
    result: dict[str, PrStatus | None] = {b: None for b in branches}
    for head, status in prs:
        if head in result:
            current = result[head]
            if current is None or status.number > current.number:
                result[head] = status
    return result


class InstantMergedPrProvider:
    """Self-test double: every branch is MERGED, with a fresh PR number per branch."""

    def __init__(self, start: int = 1000) -> None:
        self._next = itertools.count(start)
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def poll(self, branches: Sequence[str]) -> dict[str, PrStatus | None]:
        with self._lock:
            self.calls += 1
            for b in branches:
                if b not in self._numbers:
                    self._numbers[b] = next(self._next)
            return {b: PrStatus(self._numbers[b], "MERGED") for b in branches}


class ScriptedPrProvider:
    """Test double: per branch a list of answers, popped per poll; the last one repeats."""

    def __init__(self, scripts: Mapping[str, list[PrStatus | None]]) -> None:
        self._scripts = {k: list(v) for k, v in scripts.items()}
        self._lock = threading.Lock()
        self.calls = 0

    def poll(self, branches: Sequence[str]) -> dict[str, PrStatus | None]:
        with self._lock:
            self.calls += 1
            out: dict[str, PrStatus | None] = {}
            for b in branches:
                script = self._scripts.get(b, [])
                out[b] = script.pop(0) if len(script) > 1 else (script[0] if script else None)
            return out
