"""chump-tui serve's token file and its refusals at start (no browser needed here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chump_tui.errors import ChumpError
from chump_tui.tui.serve import load_token


def test_a_token_is_made_once_kept_0600_and_rotated_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "sessions" / "serve-token"
    first = load_token(path, rotate=False)
    assert len(first) >= 40 and path.read_text().strip() == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_token(path, rotate=False) == first
    rotated = load_token(path, rotate=True)
    assert rotated != first and load_token(path, rotate=False) == rotated


def test_a_token_others_may_read_or_too_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 40 + "\n")
    path.chmod(0o644)
    with pytest.raises(ChumpError, match="others may read the token"):
        load_token(path, rotate=False)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(ChumpError, match="not a token"):
        load_token(path, rotate=False)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises((ChumpError, OSError)):
        load_token(link, rotate=False)  # a planted link is never followed


@pytest.mark.parametrize("args, said", [
    (["--port", "0"], "--port 0"),
    (["--public-url", "ftp://x/y"], "--public-url"),
    (["--no-tui"], "serve runs the console"),
    (["--max-parallel", "nan"], "--max-parallel"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    done = subprocess.run([sys.executable, "-m", "chump_tui", "serve", "--demo", *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and "Traceback" not in done.stderr
