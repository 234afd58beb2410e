"""The real agent CLIs for tests, installed from the npm registry into a cache and reused.

``agent_cli("claude")`` returns the path of the installed binary. The cache is
``$CHUMP_AGENT_CLI_CACHE`` or ``.cache/agent-clis`` in the project (``./dev test`` and CI
fill it once). Without ``npm`` the tests that need a CLI are skipped, saying so; a failed
install is a failure, not a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

# Pinned: the event formats the parsers were proven against.
PACKAGES = {
    "claude": "@anthropic-ai/claude-code@2.1.197",
    "codex": "@openai/codex@0.169.0",
    "opencode": "opencode-ai@1.18.33",
    "gemini": "@google/gemini-cli@0.61.0",
}


def cache_dir() -> Path:
    return Path(os.environ.get("CHUMP_AGENT_CLI_CACHE") or PROJECT / ".cache" / "agent-clis")


def install_all() -> Path:
    """Install every pinned CLI into the cache (once); returns its bin directory."""
    cache = cache_dir()
    bin_dir = cache / "node_modules" / ".bin"
    if all((bin_dir / name).exists() for name in PACKAGES) and _stamp(cache).exists() and \
            _stamp(cache).read_text() == _wanted():
        return bin_dir
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the real agent CLI tests cannot run here")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (_stamp(cache).exists() and _stamp(cache).read_text() == _wanted()):
            print(f"dev: downloading the real agent CLIs the tests drive ({', '.join(PACKAGES)}:"
                  f" about 1.1 GB from npm, a few minutes, once) into {cache} ...",
                  file=sys.stderr, flush=True)
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix",
                                   str(cache), *PACKAGES.values()], capture_output=True,
                                  text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"npm install of the agent CLIs failed:\n{done.stderr[-3000:]}")
            _stamp(cache).write_text(_wanted())
    return bin_dir


def agent_cli(name: str) -> Path:
    return install_all() / name


def _stamp(cache: Path) -> Path:
    return cache / ".installed"


def _wanted() -> str:
    return "\n".join(sorted(PACKAGES.values()))


if __name__ == "__main__":  # ./dev and .ci/run warm the cache with this
    print(install_all())
