"""Dispatch steps, backends and fault injection, with real git and real sh children."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from chump_tui.agent_process import OutputLog
from chump_tui.backlog import Gap
from chump_tui.dispatch import dispatch_gap_with
from chump_tui.errors import DispatchError
from chump_tui.spawners import (
    FaultMode,
    RealSpawner,
    SpawnResult,
    active_fault_mode,
    resolve_backend,
    resolve_chump_local_bin,
)
from tests.conftest import git, wait_for

LOG = Path(tempfile.mkdtemp(prefix="chump-test-logs-")) / "agent.log"


def gap(id: str = "AUTO-013") -> Gap:
    return Gap(id=id, title="t", priority="P1", effort="m", status="open")


class RecordingSpawner:
    def __init__(self, fail_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def _step(self, name: str, detail: str) -> None:
        self.calls.append(f"{name}:{detail}")
        if name == self.fail_at:
            raise DispatchError(f"{name} failed")

    def create_worktree(self, worktree: Path, branch: str, base_ref: str) -> None:
        self._step("worktree", f"{worktree}:{branch}:{base_ref}")

    def claim_gap(self, worktree: Path, gap_id: str) -> str | None:
        self._step("claim", f"{worktree}:{gap_id}")
        return None

    def spawn_agent(self, worktree: Path, gap_id: str, prompt: str, log_path: Path,
                    output: OutputLog, on_line: object) -> SpawnResult:
        self._step("spawn", f"{worktree}:{len(prompt)}")
        return SpawnResult(None, "claude")


def test_dispatch_calls_steps_in_order() -> None:
    spawner = RecordingSpawner()
    handle = dispatch_gap_with(spawner, gap(), Path("/repo"), "origin/main", LOG, OutputLog())
    assert [c.split(":")[0] for c in spawner.calls] == ["worktree", "claim", "spawn"]
    assert spawner.calls[0] == "worktree:/repo/.claude/worktrees/auto-013:claude/auto-013:origin/main"
    assert spawner.calls[1].endswith(":AUTO-013")
    assert handle.branch == "claude/auto-013"
    assert handle.worktree == Path("/repo/.claude/worktrees/auto-013")
    assert handle.process is None and handle.started_at > 0


@pytest.mark.parametrize(("fail_at", "ran"), [("worktree", 1), ("claim", 2), ("spawn", 3)])
def test_failing_step_aborts_later_steps(fail_at: str, ran: int) -> None:
    spawner = RecordingSpawner(fail_at)
    with pytest.raises(DispatchError, match=f"{fail_at} failed"):
        dispatch_gap_with(spawner, gap(), Path("/repo"), "origin/main", LOG, OutputLog())
    assert len(spawner.calls) == ran


def test_depth_rule_refuses_inside_a_dispatched_agent() -> None:
    spawner = RecordingSpawner()
    with pytest.raises(DispatchError, match="CHUMP_DISPATCH_DEPTH=1"):
        dispatch_gap_with(spawner, gap(), Path("/repo"), "origin/main", LOG, OutputLog(),
                          environ={"CHUMP_DISPATCH_DEPTH": "1"})
    assert spawner.calls == []
    dispatch_gap_with(spawner, gap(), Path("/repo"), "origin/main", LOG, OutputLog(),
                      environ={"CHUMP_DISPATCH_DEPTH": "0"})


def test_unsafe_id_is_refused_before_any_step() -> None:
    spawner = RecordingSpawner()
    with pytest.raises(DispatchError, match="not usable"):
        dispatch_gap_with(spawner, gap("../../etc"), Path("/repo"), "origin/main", LOG, OutputLog())
    assert spawner.calls == []


def test_backend_selection() -> None:
    assert resolve_backend({}) == ("claude", None)
    assert resolve_backend({"CHUMP_DISPATCH_BACKEND": "claude"}) == ("claude", None)
    for v in ("chump-local", "chump_local", "local", " local "):
        assert resolve_backend({"CHUMP_DISPATCH_BACKEND": v}) == ("chump-local", None)
    label, warning = resolve_backend({"CHUMP_DISPATCH_BACKEND": "ollama-direct"})
    assert label == "claude" and warning and "ollama-direct" in warning


def test_chump_local_bin_resolution(tmp_path: Path) -> None:
    assert resolve_chump_local_bin(tmp_path, {"CHUMP_LOCAL_BIN": "/opt/c"}) == "/opt/c"
    assert resolve_chump_local_bin(tmp_path / "nothing", {}) == "chump"
    wt = tmp_path / "repo" / ".claude" / "worktrees" / "x"
    wt.mkdir(parents=True)
    debug = tmp_path / "repo" / "target" / "debug" / "chump"
    debug.parent.mkdir(parents=True)
    debug.write_text("")
    assert resolve_chump_local_bin(wt, {}) == str(debug)


def test_fault_mode_first_known_token_wins() -> None:
    assert active_fault_mode({}) is None
    assert active_fault_mode({"CHUMP_FAULT_INJECT": "bogus, exit_1,spawn_fail"}) is FaultMode.EXIT_1
    assert active_fault_mode({"CHUMP_FAULT_INJECT": "nope"}) is None


def _env_dump_agent(tmp_path: Path) -> Path:
    script = tmp_path / "agent.sh"
    script.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > argv.txt\n'
        "env > env.txt\n"
        "pwd > cwd.txt\n"
        "echo 'ERROR: something broke' >&2\n"
        "echo 'plain info' >&2\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_real_spawner_creates_worktree_skips_claim_and_runs_claude(git_repo: Path,
                                                                   tmp_path: Path) -> None:
    agent = _env_dump_agent(tmp_path)
    environ = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": str(agent),
               "OPENAI_API_KEY": "sk-test"}
    spawner = RealSpawner(git_repo, environ)
    output = OutputLog()
    handle = dispatch_gap_with(spawner, gap("AUTO_7"), git_repo, "origin/main", LOG, output,
                               environ=environ)
    assert handle.claim_note and "claim skipped" in handle.claim_note
    assert handle.process is not None
    assert handle.process.wait(10) == 0
    handle.process.join_output()
    wt = git_repo / ".claude" / "worktrees" / "auto-7"
    assert handle.worktree == wt
    assert "claude/auto-7" in git(git_repo, "branch", "--list", "claude/*")
    argv = (wt / "argv.txt").read_text().splitlines()
    assert argv[0] == "-p" and "working on gap AUTO_7" in "\n".join(argv)
    # The reference's argv, then stream-json so the live view has something to show.
    assert argv[-4:] == ["--dangerously-skip-permissions", "--output-format", "stream-json",
                         "--verbose"]
    env = dict(line.split("=", 1) for line in (wt / "env.txt").read_text().splitlines()
               if "=" in line)
    assert env["CHUMP_DISPATCH_DEPTH"] == "1"
    assert env["GIT_AUTHOR_NAME"] == env["GIT_COMMITTER_NAME"] == "Chump Dispatched"
    assert env["GIT_AUTHOR_EMAIL"] == env["GIT_COMMITTER_EMAIL"] == "chump-dispatch@chump.bot"
    assert Path((wt / "cwd.txt").read_text().strip()).resolve() == wt
    assert output.signal_lines() == ["ERROR: something broke"]
    assert output.tail() == ["ERROR: something broke", "plain info"]


def test_real_spawner_runs_claim_script_in_worktree(git_repo: Path, tmp_path: Path) -> None:
    scripts = git_repo / "scripts"
    scripts.mkdir()
    (scripts / "gap-claim.sh").write_text('#!/bin/sh\npwd > claimed-in.txt\necho "$1" > claimed-id.txt\n')
    git(git_repo, "add", "scripts")
    git(git_repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "claim")
    git(git_repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    agent = _env_dump_agent(tmp_path)
    environ = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": str(agent)}
    handle = dispatch_gap_with(RealSpawner(git_repo, environ), gap("EVAL-031"), git_repo,
                               "origin/main", LOG, OutputLog())
    assert handle.claim_note is None
    assert (handle.worktree / "claimed-id.txt").read_text().strip() == "EVAL-031"
    assert Path((handle.worktree / "claimed-in.txt").read_text().strip()).resolve() == handle.worktree
    assert handle.process is not None and handle.process.wait(10) == 0


def test_failing_claim_script_aborts_spawn(git_repo: Path, tmp_path: Path) -> None:
    scripts = git_repo / "scripts"
    scripts.mkdir()
    (scripts / "gap-claim.sh").write_text("#!/bin/sh\necho 'lease held by someone' >&2\nexit 1\n")
    git(git_repo, "add", "scripts")
    git(git_repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "claim")
    git(git_repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    marker = tmp_path / "spawned"
    agent = tmp_path / "agent.sh"
    agent.write_text(f"#!/bin/sh\ntouch {marker}\n")
    agent.chmod(0o755)
    with pytest.raises(DispatchError, match="lease held by someone"):
        dispatch_gap_with(RealSpawner(git_repo, {"PATH": os.environ["PATH"],
                                                  "CHUMP_CLAUDE_BIN": str(agent)}),
                          gap("X-1"), git_repo, "origin/main", LOG, OutputLog())
    assert not marker.exists()


def test_missing_base_ref_and_existing_worktree_are_spawn_failures(git_repo: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": "true"}
    with pytest.raises(DispatchError, match=r"git worktree add .* failed"):
        dispatch_gap_with(RealSpawner(git_repo, env), gap("X-1"), git_repo, "origin/nope",
                          LOG, OutputLog())
    # A worktree path that exists but is not this branch's worktree is never reused.
    (git_repo / ".claude" / "worktrees" / "x-2").mkdir(parents=True)
    (git_repo / ".claude" / "worktrees" / "x-2" / "notes.txt").write_text("someone's\n")
    with pytest.raises(DispatchError, match="already exists"):
        dispatch_gap_with(RealSpawner(git_repo, env), gap("X-2"), git_repo, "origin/main",
                          LOG, OutputLog())
    assert (git_repo / ".claude" / "worktrees" / "x-2" / "notes.txt").read_text() == "someone's\n"


def test_missing_agent_binary_is_a_spawn_failure(git_repo: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": "/nonexistent/claude"}
    with pytest.raises(DispatchError, match="cannot start claude agent"):
        dispatch_gap_with(RealSpawner(git_repo, env), gap("X-3"), git_repo, "origin/main",
                          LOG, OutputLog())


def test_chump_local_backend_argv_and_env(git_repo: Path, tmp_path: Path) -> None:
    agent = _env_dump_agent(tmp_path)
    environ = {"PATH": os.environ["PATH"], "CHUMP_DISPATCH_BACKEND": "chump-local",
               "CHUMP_LOCAL_BIN": str(agent), "OPENAI_API_BASE": "http://x",
               "OPENAI_MODEL": "m", "OPENAI_API_KEY": "k"}
    handle = dispatch_gap_with(RealSpawner(git_repo, environ), gap("COG-025"), git_repo,
                               "origin/main", LOG, OutputLog())
    assert handle.backend == "chump-local"
    assert handle.process is not None and handle.process.wait(10) == 0
    assert (handle.worktree / "argv.txt").read_text().splitlines() == ["--execute-gap", "COG-025"]
    env = (handle.worktree / "env.txt").read_text()
    for needle in ("OPENAI_API_BASE=http://x", "OPENAI_MODEL=m", "OPENAI_API_KEY=k",
                   "CHUMP_DISPATCH_DEPTH=1", "CHUMP_DISPATCH_BACKEND_LABEL=chump-local"):
        assert needle in env


@pytest.mark.parametrize(("mode", "code"), [("exit_1", 1), ("exit_0_no_pr", 0)])
def test_fault_injection_spawns_real_sh(git_repo: Path, mode: str, code: int) -> None:
    env = {"PATH": os.environ["PATH"], "CHUMP_FAULT_INJECT": mode}
    handle = dispatch_gap_with(RealSpawner(git_repo, env), gap("F-1"), git_repo, "origin/main",
                               LOG, OutputLog())
    assert handle.process is not None
    assert handle.process.wait(10) == code


def test_fault_injection_monitor_timeout_runs_until_killed(git_repo: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CHUMP_FAULT_INJECT": "monitor_timeout"}
    handle = dispatch_gap_with(RealSpawner(git_repo, env), gap("F-2"), git_repo, "origin/main",
                               LOG, OutputLog())
    proc = handle.process
    assert proc is not None and proc.wait(0.3) is None
    proc.terminate_group(1.0)
    wait_for(lambda: not proc.group_alive(), 5, "group gone")


def test_fault_injection_spawn_fail(git_repo: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CHUMP_FAULT_INJECT": "spawn_fail"}
    with pytest.raises(DispatchError, match="spawn_fail"):
        dispatch_gap_with(RealSpawner(git_repo, env), gap("F-3"), git_repo, "origin/main",
                          LOG, OutputLog())
