"""The settings file: its values become the defaults, flags win, --print-config says where each
value came from, and a bad file is one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def chump(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_CONFIG_HOME": str(home), **(env or {})}
    environ.pop("CHUMP_HARNESS", None)
    return subprocess.run([sys.executable, "-m", "chump_tui", *args], env=environ,
                          capture_output=True, text=True, timeout=60)


def settings(home: Path, text: str) -> Path:
    path = home / "chump-tui" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_print_config_shows_each_value_and_where_it_came_from(tmp_path: Path) -> None:
    path = settings(tmp_path, 'max-parallel = 4\nnotify = "ended,done"\nbudget_usd = 1.5\n'
                              'notify-cmd = "notify-wrapper --urgent"\nfix-ci = 2\n'
                              'trust-worker = ["UABC", "UDEF"]\ncontinuous = true\n')
    done = chump("--print-config", "--budget-usd", "2", home=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"max-parallel = 4  # {path}" in lines
    assert f'notify = "ended,done"  # {path}' in lines
    assert "budget-usd = 2.0  # flag" in lines  # the flag wins over the file
    assert f'notify-cmd = "notify-wrapper --urgent"  # {path}' in lines
    assert f'trust-worker = ["UABC", "UDEF"]  # {path}' in lines
    assert f"continuous = true  # {path}" in lines
    assert "tick = 30.0  # default" in lines
    assert "# budget-tokens is not set  # default" in lines
    assert not any(line.startswith(("backlog", "execute", "insecure-broker"))
                   for line in lines)


def test_what_print_config_prints_reads_back_the_same(tmp_path: Path) -> None:
    settings(tmp_path, 'max-parallel = 3\nnotify = "quiet"\nbudget-action = "warn"\n')
    first = chump("--print-config", home=tmp_path).stdout
    kept = "\n".join(line.split("  #")[0] for line in first.splitlines()
                     if not line.startswith("#"))
    settings(tmp_path, kept + "\n")
    again = chump("--print-config", home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [ln.split("  #")[0] for ln in again.stdout.splitlines()] == \
        [ln.split("  #")[0] for ln in first.splitlines()]


@pytest.mark.parametrize("text, said", [
    ("max-parallel = 0\n", "setting 'max-parallel': must be from 1 to 5000, got 0"),
    ("max-parallel = [\n", "config.toml: "),
    ("frobnicate = 1\n", "unknown setting 'frobnicate'"),
    ("insecure-broker = true\n", "unknown setting 'insecure-broker'"),
    ('notify = "ended,nope"\n', "unknown event 'nope'"),
    ('notify-url = "file:///etc/passwd"\n', "is not an http:// or https:// URL"),
    ("continuous = 1\n", "expected true or false"),
    ("budget-usd = nan\n", "must be more than 0"),
    ('budget-action = "explode"\n', "choose from stop, warn"),
    ("\xff\n", "config.toml: "),
])
def test_a_bad_settings_file_is_one_line_and_exit_2(tmp_path: Path, text: str,
                                                    said: str) -> None:
    path = settings(tmp_path, "")
    path.write_bytes(text.encode("latin-1"))
    done = chump("--print-config", home=tmp_path)
    assert done.returncode == 2
    assert said in done.stderr and str(path) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_no_settings_file_is_fine_and_a_named_missing_one_is_not(tmp_path: Path) -> None:
    assert chump("--print-config", home=tmp_path).returncode == 0
    missing = chump("--print-config", "--config", str(tmp_path / "nope.toml"), home=tmp_path)
    assert missing.returncode == 2 and "no such settings file" in missing.stderr
