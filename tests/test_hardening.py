"""Bad input, faults and security, tried systematically (the README's Reliability table)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chump_tui import agent_process
from chump_tui.agent_process import AgentProcess, OutputLog
from chump_tui.backlog import TOO_LARGE, load_backlog
from chump_tui.dispatch import dispatch_gap_with
from chump_tui.engine import Engine, EngineConfig
from chump_tui.errors import BacklogError, DispatchError
from chump_tui.events import Notice
from chump_tui.log_lines import Redactor, secret_values
from chump_tui.monitor import (
    DispatchOutcome,
    Done,
    KeepGoing,
    KillThenDone,
    MarkStalled,
    decide_tick,
)
from chump_tui.picker import pick_reason
from chump_tui.pr_providers import GhPrProvider, PrProviderError, PrStatus, ScriptedPrProvider
from chump_tui.reflections import MemoryReflectionWriter
from chump_tui.session_store import SessionStore
from chump_tui.spawners import RealSpawner
from tests.conftest import gh_calls, wait_for
from tests.test_engine import ScriptSpawner, gap

CORPUS = Path(__file__).parent / "corpus"

REFUSED = {
    "empty.yaml": "file is empty",
    "only-comments.yaml": "file is empty",
    "root-list.yaml": "top level is a list",
    "root-scalar.yaml": "top level is a string",
    "gaps-mapping.yaml": "'gaps' is a mapping",
    "gap-not-mapping.yaml": "gaps[0] is a string",
    "missing-id.yaml": "gaps[0] has no 'id'",
    "empty-id.yaml": "gaps[0] has no 'id'",
    "numeric-id.yaml": "'id' is a number",
    "depends-string.yaml": "'depends_on' is a string",
    "depends-number.yaml": "'depends_on' is a number",
    "tabs.yaml": "line 2, column 1: YAML syntax error",
    "python-tag.yaml": "line 1, column 7: YAML syntax error",
    "latin1.yaml": "line 3: not valid UTF-8",
    "syntax-error.yaml": "line 4, column 1: YAML syntax error",
    "deep-nesting.yaml": "nested more than 512 levels deep",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_corpus_file_is_refused_with_one_clear_line(name: str) -> None:
    path = CORPUS / name
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"chump-tui: {path}: {lines[0].split(f'{path}: ', 1)[1]}"]
    assert REFUSED[name] in lines[0]
    assert not Path("/tmp/chump-corpus-pwned").exists()


LOADED_WITH_WARNINGS = {
    "duplicate-ids.yaml": "gap A-1: duplicate id (lines 2, 3); it is never dispatched",
    "colliding-ids.yaml": "gap X_1: same worktree and branch as x-1 (lines 2, 3)",
    "repeated-key.yaml": "line 4: key 'id' given twice in one mapping (lines 2 and 4)",
    "deep-block-nesting.yaml": "",
}


@pytest.mark.parametrize("name", sorted(LOADED_WITH_WARNINGS))
def test_corpus_file_loads_with_a_warning(name: str) -> None:
    path = CORPUS / name
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert LOADED_WITH_WARNINGS[name] in done.stderr


def test_every_corpus_file_is_covered() -> None:
    assert set(REFUSED) | set(LOADED_WITH_WARNINGS) | {
        "billion-laughs.yaml", "ok-odd-values.yaml"} == {p.name for p in CORPUS.glob("*.yaml")}


def test_billion_laughs_loads_bounded_and_renders_fast() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    (bomb,) = load_backlog(CORPUS / "billion-laughs.yaml").gaps
    assert bomb.extra["description"] == TOO_LARGE
    assert bomb.text("description") == TOO_LARGE
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_odd_values_load_with_warnings_and_reasons() -> None:
    backlog = load_backlog(CORPUS / "ok-odd-values.yaml")
    assert backlog.warnings == ["gap S-1 depends on itself", "dependency cycle: C-1 -> C-2 -> C-1"]
    by_id = backlog.by_id()
    assert pick_reason(by_id["S-1"], set(), by_id) == "needs S-1 (open)"
    assert pick_reason(by_id["U-1"], set(), by_id) == "status wip"


def test_fifty_megabyte_file_is_refused_quickly(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.write(b"gaps:\n")
        fh.truncate(50 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(BacklogError, match="is 50 MiB; the limit is 32 MiB"):
        load_backlog(big)
    assert time.perf_counter() - started < 1


def test_registry_with_broken_file_and_symlink_loop(tmp_path: Path) -> None:
    reg = tmp_path / "gaps"
    reg.mkdir()
    (reg / "A-1.yaml").write_text("- id: A-1\n  status: open\n")
    (reg / "B-2.yaml").write_bytes((CORPUS / "syntax-error.yaml").read_bytes())
    (reg / "C-3.yaml").write_text("id: C-3\n")
    (reg / "loop.yaml").symlink_to(reg / "loop.yaml")
    backlog = load_backlog(reg)
    assert [g.id for g in backlog.gaps] == ["A-1", "C-3"]
    assert len(backlog.warnings) == 2
    assert any("B-2.yaml" in w and "line 4" in w for w in backlog.warnings)
    assert any("loop.yaml" in w for w in backlog.warnings)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_loader_only_raises_its_own_error(tmp_path_factory: pytest.TempPathFactory,
                                          data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "gaps.yaml"
    path.write_bytes(data)
    try:
        load_backlog(path)
    except BacklogError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


gap_values = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=3)))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["id", "title", "priority", "effort", "status",
                                                  "depends_on", "x"]), gap_values), max_size=6))
def test_loader_on_structured_garbage(tmp_path_factory: pytest.TempPathFactory,
                                      gaps: list[dict[str, object]]) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "gaps.yaml"
    path.write_text(json.dumps({"gaps": gaps}))  # JSON is YAML
    with contextlib.suppress(BacklogError):
        load_backlog(path)


prs = st.one_of(st.none(), st.builds(PrStatus, st.integers(1, 9999),
                                     st.sampled_from(["OPEN", "CLOSED", "MERGED", "open"])))


@given(pr=prs, start=st.floats(0, 1e6), elapsed=st.floats(0, 1e6), soft=st.floats(1, 1e5),
       code=st.one_of(st.none(), st.integers(-9, 255)), running=st.booleans())
def test_decide_tick_properties(pr: PrStatus | None, start: float, elapsed: float, soft: float,
                                code: int | None, running: bool) -> None:
    d = decide_tick(pr, start, start + elapsed, soft, code, running)
    if code not in (None, 0):
        assert d == Done(DispatchOutcome.killed(f"exit code {code}"))
        return
    if pr is not None and pr.state.upper() == "MERGED":
        assert d == Done(DispatchOutcome.shipped(pr.number))
    elif pr is not None and pr.state.upper() == "OPEN":
        assert d == KeepGoing()  # an open PR is never stalled or killed
    if isinstance(d, KillThenDone):
        assert pr is None and elapsed > 2 * soft
    if isinstance(d, MarkStalled):
        assert running and pr is None


@given(soft=st.floats(1, 1e4), times=st.lists(st.floats(0, 1e5), min_size=2, max_size=8))
def test_decide_tick_is_monotonic_over_time(soft: float, times: list[float]) -> None:
    """Without a PR or exit, later never looks better: keep-going < stalled < killed."""
    rank = {KeepGoing: 0, MarkStalled: 1, KillThenDone: 2}
    ranks = [rank[type(decide_tick(None, 0, t, soft, None, True))] for t in sorted(times)]
    assert ranks == sorted(ranks)


# ------------------------------------------------------------------ faults
def test_gh_rate_limited_is_an_error_not_a_crash(tmp_path: Path, stub_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_GH_MODE", "fail")
    with pytest.raises(PrProviderError, match="exit 1"):
        GhPrProvider(tmp_path).poll(["claude/a"])
    assert len(gh_calls(stub_env)) == 1


def test_agent_binary_not_executable(git_repo: Path, tmp_path: Path) -> None:
    agent = tmp_path / "agent.sh"
    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(0o644)
    env = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": str(agent)}
    with pytest.raises(DispatchError, match="Permission denied"):
        dispatch_gap_with(RealSpawner(git_repo, env), gap("NX-1"), git_repo, "origin/main",
                          tmp_path / "l.log", OutputLog())


def run_one(script: str, tmp_path: Path, **config: object) -> tuple[Engine, list[object]]:
    engine = Engine(tmp_path, ScriptSpawner(default=script), ScriptedPrProvider({}),
                    MemoryReflectionWriter(), EngineConfig(tick_s=0.01, kill_grace_s=0.2,
                                                           log_dir=tmp_path / "logs"))
    for key, value in config.items():
        setattr(engine.config, key, value)
    events: list[object] = []
    engine.subscribe(events.append)
    engine.dispatch([gap("F-1")])
    engine.start()
    assert engine.wait_until_idle(60)
    engine.close()
    return engine, events


def test_flooding_agent_is_bounded_in_memory_and_on_disk(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_process, "LOG_CAP_BYTES", 2 * 1024 * 1024)
    # ~24 MiB of output (scaled down from hundreds of MB to keep the suite fast).
    flood = ("yes 'ERROR flood line padded to about sixty four bytes ......' "
             "| head -c 25000000 >&2; exit 1")
    engine, _ = run_one(flood, tmp_path)
    (d,) = engine.snapshot()
    assert d.outcome == DispatchOutcome.killed("exit code 1")
    assert Path(d.log_path).stat().st_size <= 3 * 1024 * 1024
    tail = engine.output_tail(d.key)
    assert len(tail) <= agent_process.LIVE_TAIL_CAP
    assert any("log reached" in line for line in tail) or tail[-1].startswith("ERROR flood")


def test_invalid_utf8_and_closed_output_and_no_newline(tmp_path: Path) -> None:
    script = ("printf 'bad \\377\\376 bytes\\n' >&2; printf 'WARN no newline at end' >&2; "
              "exec 1>&- 2>&-; sleep 0.3; exit 0")
    engine, _ = run_one(script, tmp_path, soft_deadline_s=0.5)
    (d,) = engine.snapshot()
    assert engine.output_tail(d.key) == ["bad \ufffd\ufffd bytes", "WARN no newline at end"]
    assert d.outcome == DispatchOutcome.stalled()  # exited 0 with no PR, judged at the deadline


def test_read_only_sessions_dir_does_not_stop_the_fleet(tmp_path: Path) -> None:
    class FullDisk(SessionStore):
        def save(self, records: list[object], changed: str | None = None) -> None:  # type: ignore[override]
            raise OSError(errno.ENOSPC, "No space left on device")

    engine = Engine(tmp_path, ScriptSpawner(), ScriptedPrProvider({"claude/f-1": [
        PrStatus(1, "MERGED")]}), MemoryReflectionWriter(), EngineConfig(tick_s=0.01),
        store=FullDisk(tmp_path / "s"))
    events: list[object] = []
    engine.subscribe(events.append)
    engine.dispatch([gap("F-1")])
    engine.start()
    assert engine.wait_until_idle(10)
    engine.close()
    assert engine.snapshot()[0].outcome == DispatchOutcome.shipped(1)
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices == [f"cannot save {tmp_path / 's' / 'state.json'}: No space left on device"]


def test_unwritable_log_dir_is_a_spawn_failure(git_repo: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o500)
    try:
        if os.access(logs, os.W_OK):
            pytest.skip("running as a user that ignores directory permissions")
        env = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": "true"}
        with pytest.raises(DispatchError, match="Permission denied"):
            dispatch_gap_with(RealSpawner(git_repo, env), gap("RO-1"), git_repo, "origin/main",
                              logs / "x.log", OutputLog())
    finally:
        logs.chmod(0o700)


def test_unwritable_log_file_is_a_spawn_failure(git_repo: Path, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": "true"}
    with pytest.raises(DispatchError, match="cannot start claude agent"):
        dispatch_gap_with(RealSpawner(git_repo, env), gap("RO-2"), git_repo, "origin/main",
                          Path("/proc/nope/x.log"), OutputLog())


# ---------------------------------------------------------------- security
def test_redactor_and_secret_discovery() -> None:
    env = {"OPENAI_API_KEY": "sk-abcdefgh123", "GH_TOKEN": "ghp_zzzzzzzz", "HOME": "/root",
           "SHORT_TOKEN": "abc"}
    assert secret_values(env) == ["sk-abcdefgh123", "ghp_zzzzzzzz"]
    redact = Redactor(secret_values(env))
    assert redact("key=sk-abcdefgh123 tok ghp_zzzzzzzz") == "key=*** tok ***"


def test_secrets_never_reach_ui_state_or_reflections(git_repo: Path, stub_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    agent = tmp_path / "leaky.sh"
    agent.write_text('#!/bin/sh\necho "ERROR: auth failed for $OPENAI_API_KEY and $GH_TOKEN" >&2\n'
                     "exit 2\n")
    agent.chmod(0o755)
    (git_repo / "gaps.yaml").write_text("gaps:\n  - {id: SEC-1, priority: P1, effort: s, "
                                        "status: open}\n")
    env = dict(os.environ, OPENAI_API_KEY="sk-live-SECRET-123456", GH_TOKEN="ghp_SECRET_abcdef",
               CHUMP_CLAUDE_BIN=str(agent))
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog",
                           "gaps.yaml", "--execute", "--watch", "--tick", "0.1"],
                          cwd=git_repo, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stored = [done.stdout, done.stderr]
    for path in (git_repo / "sessions").rglob("*"):
        if path.is_file() and "logs" not in path.parts:
            stored.append(path.read_bytes().decode("utf-8", errors="replace"))
    import sqlite3
    conn = sqlite3.connect(git_repo / "sessions" / "chump_memory.db")
    stored += [str(r) for r in conn.execute("SELECT * FROM chump_reflections")]
    stored += [str(r) for r in conn.execute("SELECT * FROM chump_improvement_targets")]
    assert any("ERROR: auth failed for *** and ***" in s for s in stored)
    for text in stored:
        assert "sk-live-SECRET-123456" not in text and "ghp_SECRET_abcdef" not in text


def test_files_we_create_are_not_world_writable(git_repo: Path, stub_env: dict[str, str]) -> None:
    (git_repo / "gaps.yaml").write_text("gaps:\n  - {id: P-1, priority: P1, effort: s, "
                                        "status: open}\n")
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog",
                           "gaps.yaml", "--execute", "--watch", "--tick", "0.1"],
                          cwd=git_repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    created = [p for p in (git_repo / "sessions").rglob("*") if p.is_file()]
    assert len(created) >= 4
    for path in created:
        assert not path.stat().st_mode & stat.S_IWOTH, path
        if path.suffix in (".db", ".log", ".json") or path.name == "lock":
            assert not path.stat().st_mode & 0o077, path


def test_prompt_is_one_argv_element_and_ids_never_reach_a_shell(git_repo: Path,
                                                               tmp_path: Path) -> None:
    agent = tmp_path / "argc.sh"
    agent.write_text('#!/bin/sh\necho "$#" > argc.txt\n')
    agent.chmod(0o755)
    (git_repo / "docs").mkdir()
    (git_repo / "docs" / "CHUMP_DISPATCH_RULES.md").write_text("rules with $(touch pwned) and ;\n")
    env = {"PATH": os.environ["PATH"], "CHUMP_CLAUDE_BIN": str(agent)}
    handle = dispatch_gap_with(RealSpawner(git_repo, env), gap("ARG-1"), git_repo, "origin/main",
                               tmp_path / "a.log", OutputLog())
    assert handle.process is not None and handle.process.wait(10) == 0
    assert (handle.worktree / "argc.txt").read_text().strip() == "6"  # -p PROMPT + 4 flags
    assert not (handle.worktree / "pwned").exists()
    for evil in ("x;touch pwned", "$(touch pwned)", "../../x", "a b"):
        with pytest.raises(DispatchError, match="not usable"):
            dispatch_gap_with(RealSpawner(git_repo, env), gap(evil), git_repo, "origin/main",
                              tmp_path / "b.log", OutputLog())
    assert not list(git_repo.rglob("pwned"))


def test_agent_process_spawn_needs_no_shell(tmp_path: Path) -> None:
    output = OutputLog()
    proc = AgentProcess.spawn(["printf", "%s", "a;b $(x)"], tmp_path, dict(os.environ),
                              tmp_path / "o.log", output)
    assert proc.wait(10) == 0
    proc.join_output()
    wait_for(lambda: output.tail() == ["a;b $(x)"], 5)
