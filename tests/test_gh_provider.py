"""GhPrProvider against a stub `gh` on PATH: one call per poll, errors never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chump_tui.pr_providers import GhPrProvider, PrProviderError, PrStatus
from tests.conftest import gh_calls


@pytest.mark.parametrize("n", [1, 10, 100])
def test_one_gh_call_per_poll(tmp_path: Path, stub_env: dict[str, str], n: int) -> None:
    branches = [f"claude/g-{i}" for i in range(n)]
    Path(stub_env["STUB_GH_STATE"]).write_text(
        "claude/g-0 CLOSED\nclaude/g-0 MERGED\nclaude/other OPEN\nclaude/g-1 OPEN DIRTY\n")
    provider = GhPrProvider(tmp_path)
    answer = provider.poll(branches)
    assert len(gh_calls(stub_env)) == 1
    call = gh_calls(stub_env)[0]
    assert call.startswith("pr list --state all --json number,state,mergeStateStatus,headRefName")
    assert answer["claude/g-0"] == PrStatus(101, "MERGED", "CLEAN")  # newest PR wins
    if n > 1:
        assert answer["claude/g-1"] == PrStatus(103, "OPEN", "DIRTY")
    assert "claude/other" not in answer
    assert sum(1 for v in answer.values() if v is None) == max(0, n - 2)


def test_no_branches_no_call(tmp_path: Path, stub_env: dict[str, str]) -> None:
    assert GhPrProvider(tmp_path).poll([]) == {}
    assert gh_calls(stub_env) == []


@pytest.mark.parametrize(("mode", "message"), [("fail", "exit 1"), ("garbage", "not JSON")])
def test_gh_failures_raise_provider_error(tmp_path: Path, stub_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch, mode: str,
                                          message: str) -> None:
    monkeypatch.setenv("STUB_GH_MODE", mode)
    with pytest.raises(PrProviderError, match=message):
        GhPrProvider(tmp_path).poll(["claude/a"])


def test_gh_hang_times_out(tmp_path: Path, stub_env: dict[str, str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_GH_MODE", "hang")
    with pytest.raises(PrProviderError, match="timed out"):
        GhPrProvider(tmp_path, timeout_s=0.5).poll(["claude/a"])


def test_gh_missing(tmp_path: Path) -> None:
    with pytest.raises(PrProviderError, match="not found: install GitHub's CLI"):
        GhPrProvider(tmp_path, gh="/nonexistent/gh").poll(["claude/a"])


def test_failed_checks_are_read_and_become_the_reason(tmp_path: Path) -> None:
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.monitor import DispatchOutcome
    from chump_tui.pr_providers import parse_pr_list

    rows = parse_pr_list(json.dumps([{
        "number": 7, "state": "CLOSED", "headRefName": "claude/a", "mergeStateStatus": "CLEAN",
        "statusCheckRollup": [
            {"__typename": "CheckRun", "name": "test (ubuntu)", "conclusion": "FAILURE"},
            {"__typename": "CheckRun", "name": "lint", "conclusion": "SUCCESS"},
            {"__typename": "StatusContext", "context": "ci/legacy", "state": "ERROR"},
            "garbage", {"name": 3}]}]).encode())
    (branch, pr), = rows
    assert pr.failed_checks == ("test (ubuntu)", "ci/legacy")
    d = Dispatch(key="A#1", gap_id="A", title="", priority="P1", effort="s", branch=branch,
                 worktree="", attempt=1, started_at=0, soft_deadline_s=60, phase="ended", pr=pr,
                 outcome=DispatchOutcome.ci_failed(7))
    assert d.reason() == "PR #7 closed; checks failed: test (ubuntu), ci/legacy"
    assert Dispatch.from_json(d.to_json()) == d  # kept in state.json
