"""Shared test fixtures: real git repos, a fake agent, a stub `gh` on PATH, deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HELPERS = Path(__file__).parent / "helpers"
PROJECT = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll until condition() is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="session")
def real_backlogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gaps.yaml`` and ``registry-sample/``: the real ones from ../shared, else made ones of
    the same shape (tests/backlog_factory.py): a clone without ../shared runs these too."""
    from tests.backlog_factory import real_backlogs

    return real_backlogs(tmp_path_factory.mktemp("made-backlogs"))


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A repo with one commit on main and origin/main pointing at it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env_git = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("test repo\n")
    git(repo, "add", "README")
    git(repo, *env_git, "commit", "-qm", "init")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    return repo.resolve()


def stub_gh_env(tmp_path: Path) -> dict[str, str]:
    """PATH with a stub `gh` (its state and call log in ``tmp_path``); CHUMP_CLAUDE_BIN =
    the fake agent."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(f"#!/bin/sh\nexec {sys.executable} {HELPERS / 'stub_gh.py'} \"$@\"\n")
    gh.chmod(0o755)
    state = tmp_path / "gh-state.txt"
    state.write_text("")
    return {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "STUB_GH_STATE": str(state),
        "STUB_GH_LOG": str(tmp_path / "gh-calls.log"),
        "CHUMP_CLAUDE_BIN": str(HELPERS / "fake_agent.sh"),
    }


@pytest.fixture
def stub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The stub gh and fake agent (``stub_gh_env``) in this test's environment."""
    env = stub_gh_env(tmp_path)
    for key in ("CHUMP_DISPATCH_DEPTH", "CHUMP_FAULT_INJECT", "CHUMP_DISPATCH_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def gh_calls(env: dict[str, str]) -> list[str]:
    log = Path(env["STUB_GH_LOG"])
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def model_servers() -> Iterator[list[Any]]:
    """The scripted model servers a test starts (tests/model_servers); stopped after it."""
    started: list[Any] = []
    yield started
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def chump_cli() -> Iterator[list[str]]:
    """argv prefix that runs the CLI in a fresh interpreter."""
    yield [sys.executable, "-m", "chump_tui"]


@pytest.fixture(autouse=True)
def _no_settings_file_of_the_developers(tmp_path_factory: pytest.TempPathFactory,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ~/.config/chump-tui/config.toml must not change what a test runs (the
    settings-file tests point XDG_CONFIG_HOME where they want)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("no-config")))


@pytest.fixture(autouse=True)
def _no_stray_worktree_dirs() -> Iterator[None]:
    yield
    stray = PROJECT / ".claude"
    if stray.exists():
        shutil.rmtree(stray, ignore_errors=True)


def saved_rows(session: Path) -> list[dict[str, Any]]:
    """The live rows a session saved, as a console resuming it reads them: state.json's,
    then the later versions its generation's journal appended."""
    try:
        data = json.loads((session / "state.json").read_text())
        rows = {row["key"]: row for row in data["dispatches"]}
        journal = session / f"changes-{data.get('generation', 0)}.jsonl"
        for line in (journal.read_text().splitlines() if journal.exists() else []):
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                rows[row["key"]] = row
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return list(rows.values())


def saved_text(session: Path) -> str:
    """Everything a session saved, as text: state.json, its journal, settled.jsonl."""
    paths = [session / "state.json", *sorted(session.glob("changes-*.jsonl")),
             session / "settled.jsonl"]
    return "".join(p.read_text() for p in paths if p.exists())
