"""The plain CLI end to end: real git worktrees, a fake agent, a stub gh, a real SQLite file."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chump_tui.agent_process import group_has_live_member
from tests.conftest import gh_calls, git, wait_for

FOUR_GAPS = """gaps:
  - {id: E2E-001, title: one, priority: P1, effort: s, status: open}
  - {id: E2E-002, title: two, priority: P1, effort: s, status: open}
  - {id: E2E-003, title: three, priority: P2, effort: s, status: open, depends_on: [E2E-001]}
  - {id: E2E-004, title: four, priority: P2, effort: s, status: open}
  - {id: E2E-000, title: done, priority: P1, effort: s, status: done}
"""


def run_cli(repo: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", *args], cwd=repo,
                          capture_output=True, text=True, timeout=timeout)


def reflection_rows(repo: Path) -> list[tuple[str, str]]:
    db = repo / "sessions" / "chump_memory.db"
    conn = sqlite3.connect(db)
    return conn.execute("SELECT intended_goal, outcome_class FROM chump_reflections "
                        "ORDER BY id").fetchall()


def test_dry_run_needs_no_git(tmp_path: Path) -> None:
    (tmp_path / "gaps.yaml").write_text(FOUR_GAPS)
    done = run_cli(tmp_path, "--backlog", "gaps.yaml")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("chump-orchestrator (MVP complete, dry-run): 5 total gaps, 4 open, 1 done; "
                        "would dispatch 2 of max-parallel 2")
    assert lines[1] == "WOULD DISPATCH: E2E-001 (prio=P1 effort=s) in .claude/worktrees/e2e-001  -- one"
    assert lines[2].startswith("WOULD DISPATCH: E2E-002")


def test_dry_run_in_a_repo_shows_paths_under_the_root(git_repo: Path) -> None:
    (git_repo / "docs").mkdir()
    (git_repo / "docs" / "gaps.yaml").write_text(FOUR_GAPS)
    sub = git_repo / "docs"
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui"], cwd=sub,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"in {git_repo}/.claude/worktrees/e2e-001  -- one" in done.stdout


def test_execute_watch_drains_backlog_to_four_shipped(git_repo: Path,
                                                      stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    done = run_cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--continuous",
                   "--tick", "0.2", "--max-parallel", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("DISPATCHED: ") == 4
    for gid in ("e2e-001", "e2e-002", "e2e-003", "e2e-004"):
        assert f"  SHIPPED   claude/{gid}  PR #" in out
    assert "shipped=4  ci_failed=0  stalled=0  killed=0  spawn_failures=0" in out
    rows = reflection_rows(git_repo)
    assert sorted(rows) == [(f"ship gap E2E-00{i}", "success") for i in range(1, 5)]
    # E2E-003 depends on E2E-001: it must have been dispatched after 001 shipped.
    order = [ln.split()[1] for ln in out.splitlines() if ln.startswith("DISPATCHED: ")]
    assert order.index("E2E-003") > order.index("E2E-001")
    worktrees = git(git_repo, "worktree", "list")
    assert worktrees.count(".claude/worktrees/e2e-") == 4
    assert "agent work" in git(git_repo, "log", "--oneline", "claude/e2e-001")
    calls = gh_calls(stub_env)
    assert calls and all(c.startswith("pr list") for c in calls)
    logs = list((git_repo / "sessions" / "chump-tui" / "logs").glob("*.log"))
    assert len(logs) == 4 and "WARN: pretend warning" in logs[0].read_text()


def test_execute_without_watch_reports_spawn_failure_exit_1(git_repo: Path,
                                                            stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    done = run_cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--base-ref", "origin/nope")
    assert done.returncode == 1
    assert done.stderr.count("DISPATCH-FAILED: ") == 2
    assert "DISPATCH-FAILED: E2E-001: creating worktree" in done.stderr
    assert "Traceback" not in done.stderr


def test_depth_rule_refuses_from_inside_an_agent(git_repo: Path, stub_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    monkeypatch.setenv("CHUMP_DISPATCH_DEPTH", "1")
    done = run_cli(git_repo, "--backlog", "gaps.yaml", "--execute")
    assert done.returncode == 1
    assert "refusing to dispatch: CHUMP_DISPATCH_DEPTH=1" in done.stderr
    assert not (git_repo / ".claude").exists()


@pytest.mark.parametrize(("mode", "summary"), [
    ("close", "  CI-FAILED claude/e2e-001  PR #"),
    ("fail", '  KILLED    claude/e2e-001  exit code 3'),
])
def test_other_outcomes_through_the_cli(git_repo: Path, stub_env: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch, mode: str,
                                        summary: str) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    monkeypatch.setenv("FAKE_AGENT_MODE", mode)
    done = run_cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.2",
                   "--max-parallel", "1")
    assert done.returncode == 0, done.stderr
    assert summary in done.stdout
    assert reflection_rows(git_repo) == [("ship gap E2E-001", "failure")]


def test_soft_deadline_kill_through_the_cli(git_repo: Path, stub_env: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    done = run_cli(git_repo, "--backlog", "gaps.yaml", "--execute", "--watch", "--tick", "0.1",
                   "--max-parallel", "1", "--soft-deadline", "0.5", "--kill-grace", "0.3")
    assert done.returncode == 0, done.stderr
    assert "  KILLED    claude/e2e-001  soft-deadline exceeded (0.5s × 2)" in done.stdout
    assert "no PR after the soft deadline" in done.stderr


def test_ctrl_c_stops_agents_records_interrupted_and_exits_130(git_repo: Path,
                                                               stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    env = dict(os.environ, FAKE_AGENT_MODE="hang")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", "gaps.yaml", "--execute",
         "--watch", "--tick", "0.2", "--kill-grace", "0.5"],
        cwd=git_repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []

    def dispatched() -> bool:
        line = proc.stdout.readline() if proc.stdout else ""  # type: ignore[union-attr]
        if line.startswith("DISPATCHED: "):
            pids.append(int(line.split()[-1]))
        return len(pids) == 2

    wait_for(dispatched, 30, "two DISPATCHED lines")
    time.sleep(0.3)  # let the agents reach their `trap '' TERM` line (not a wait for a result)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out.count('KILLED    claude/e2e-00') == 2 and "interrupted" in out
    assert "killed=2" in out
    for pid in pids:
        assert not group_has_live_member(pid)
    rows = reflection_rows(git_repo)
    assert len(rows) == 2 and all(cls == "failure" for _, cls in rows)


def test_ctrl_c_while_dispatching_stops_every_agent_and_exits(git_repo: Path,
                                                              stub_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    """Ctrl+C before the wait starts (the second gap's claim script still running) is
    noted, not raised: the dispatch finishes, then every agent is stopped and recorded.
    Raised mid-dispatch it left the engine's threads running and the process never exited."""
    marker = tmp_path / "claiming"
    (git_repo / "scripts").mkdir()
    (git_repo / "scripts" / "gap-claim.sh").write_text(
        f'if [ "$1" = E2E-002 ]; then touch {marker}; sleep 2; fi\n')
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    git(git_repo, "add", "scripts", "gaps.yaml")
    git(git_repo, "-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-qm",
        "claim script")
    git(git_repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    env = dict(os.environ, FAKE_AGENT_MODE="hang")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", "gaps.yaml", "--execute",
         "--watch", "--tick", "0.2", "--kill-grace", "0.5"],
        cwd=git_repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker.exists, 30, "the second gap's claim script")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out.count("KILLED    claude/e2e-00") == 2 and "interrupted" in out
    assert len(reflection_rows(git_repo)) == 2


def test_self_test_from_any_directory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--self-test", "--no-tui"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("self-test PASSED: rows=4 reflections=4 dummy_files=4 elapsed=")
    assert lines[1] == "  SYNTH-001    claude/synth-001               Shipped(1000)"
    assert len(lines) == 5


def test_dry_run_on_real_backlogs(real_backlogs: Path, tmp_path: Path) -> None:
    for backlog in ("gaps.yaml", "registry-sample"):
        done = run_cli(tmp_path, "--backlog", str(real_backlogs / backlog),
                       "--max-parallel", "5")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("WOULD DISPATCH: ") == 5
    assert "543 total gaps, 113 open, 423 done" in run_cli(
        tmp_path, "--backlog", str(real_backlogs / "gaps.yaml")).stdout


@pytest.mark.parametrize("args", [["--bogus"], ["--max-parallel", "x"], ["--max-parallel", "0"],
                                  ["--tick", "0"], ["--backlog"]])
def test_bad_flags_are_one_line_errors(tmp_path: Path, args: list[str]) -> None:
    done = run_cli(tmp_path, *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_help_lists_every_flag(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--help")
    assert done.returncode == 0
    for flag in ("--backlog", "--max-parallel", "--dry-run", "--no-dry-run", "--execute", "--watch",
                 "--blocking", "--no-reflect", "--self-test", "--repo-root", "--base-ref",
                 "--no-tui", "--tick", "--kill-grace", "--soft-deadline", "--continuous", "--demo"):
        assert flag in done.stdout


def test_plain_watch_says_when_an_agent_exits_and_a_repeated_gh_error_once(
        git_repo: Path, stub_env: dict[str, str], chump_cli: list[str]) -> None:
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS.split("  - {id: E2E-002")[0])
    env = {**os.environ, **stub_env, "STUB_GH_MODE": "fail", "FAKE_AGENT_MODE": "open"}
    done = subprocess.run([*chump_cli, "--no-tui", "--execute", "--watch", "--backlog",
                           "gaps.yaml", "--tick", "0.05", "--soft-deadline", "1.5"],
                          cwd=git_repo, env=env, capture_output=True, text=True, timeout=60)
    err = done.stderr.splitlines()
    assert any(re.fullmatch(r"\[monitor\] E2E-001 exited 0, no PR yet; waiting until "
                            r"\d\d:\d\d:\d\d", ln) for ln in err), done.stderr
    failures = [ln for ln in err if ln.startswith("[monitor] gh pr list failed: ")]
    assert len(failures) == 1, done.stderr
    assert any(re.fullmatch(r"\[monitor\] gh pr list failed \d+ more time\(s\) the same way",
                            ln) for ln in err)


def test_missing_gh_says_how_to_install_it(tmp_path: Path) -> None:
    from chump_tui.pr_providers import GhPrProvider, PrProviderError

    provider = GhPrProvider(tmp_path, gh=str(tmp_path / "no-such-gh"))
    with pytest.raises(PrProviderError, match="install GitHub's CLI"):
        provider.poll(["claude/x"])


def test_shipped_gaps_are_not_paid_for_twice(git_repo: Path, stub_env: dict[str, str]) -> None:
    """A gap whose branch has a merged PR is not dispatched again (a cron job would pay for
    it every run), unless asked; and an attempt is credited only with a PR of its own."""
    (git_repo / "gaps.yaml").write_text(FOUR_GAPS)
    first = run_cli(git_repo, "--execute", "--watch", "--tick", "0.2", "--backlog", "gaps.yaml",
                    timeout=120)
    assert "shipped=2" in first.stdout, first.stdout + first.stderr
    pr_of = dict(re.findall(r"SHIPPED\s+claude/(e2e-00\d)\s+PR #(\d+)", first.stdout))
    again = run_cli(git_repo, "--execute", "--backlog", "gaps.yaml", timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"E2E-001 not dispatched: shipped in #{pr_of['e2e-001']}" in again.stderr
    assert "DISPATCHED: E2E-001" not in again.stdout and "DISPATCHED: E2E-002" not in again.stdout
    # Its dependency shipped, so E2E-003 is pickable; with E2E-004 that makes 2.
    assert "would dispatch 2 of max-parallel 2" in again.stdout.splitlines()[0], again.stdout
    forced = run_cli(git_repo, "--execute", "--watch", "--tick", "0.2", "--backlog", "gaps.yaml",
                     "--include-shipped", "--max-parallel", "4", timeout=120)
    assert "DISPATCHED: E2E-001" in forced.stdout, forced.stdout + forced.stderr
    new_pr = re.search(r"SHIPPED\s+claude/e2e-001\s+PR #(\d+)", forced.stdout)
    assert new_pr and new_pr.group(1) != pr_of["e2e-001"], forced.stdout  # its own, not #100
