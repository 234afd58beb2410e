"""The real backlogs (``../shared/real-backlogs``) when they are there, else backlogs made
here with the same shape: a clone without ``../shared`` runs every test and benchmark.

The made ones match what the tests and benchmarks count on: a monolithic ``gaps.yaml`` of
543 gaps (113 open, 423 done, 7 otherwise), a ``meta`` block and long multi-line
descriptions; a registry directory of 160 one-item files, each named by its id.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-backlogs"
DOMAINS = ["INFRA", "EVAL", "COG", "QUALITY", "DOC", "CREDIBLE", "FLEET", "MEM"]
WORDS = ["cache", "parse", "registry", "poll", "merge", "queue", "lease", "crash", "retry",
         "dispatch", "agent", "worktree", "branch", "claim", "budget", "trace", "span",
         "metric", "judge", "recall", "memory", "gate", "review", "docs", "build", "test",
         "flaky", "soak", "bench", "index", "schema", "drift", "release", "ledger", "sweep"]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()


def made_gaps(n: int = 543, done: int = 423, open_: int = 113, seed: int = 543) -> list[dict]:
    rng = random.Random(seed)
    statuses = ["done"] * done + ["open"] * open_ + ["blocked", "deferred", "in-progress",
                                                     "wontfix", "parked", "blocked",
                                                     "deferred"][: n - done - open_]
    rng.shuffle(statuses)
    gaps: list[dict] = []
    for i, status in enumerate(statuses):
        domain = DOMAINS[i % len(DOMAINS)]
        gap: dict = {
            "id": f"{domain}-{i + 1:03d}", "domain": domain,
            "title": f"{domain}: {_sentence(rng, rng.randint(4, 12))} — {_sentence(rng, 3)}",
            "status": status, "priority": rng.choice(["P0", "P1", "P1", "P2", "P2", "P3"]),
            "effort": rng.choice(["s", "m", "m", "l", "xl"]),
            "description": "\n".join(_sentence(rng, rng.randint(8, 30)) + "."
                                     for _ in range(rng.randint(1, 6))) + "\n",
            "acceptance_criteria": [_sentence(rng, rng.randint(5, 12))
                                    for _ in range(rng.randint(1, 5))],
        }
        if gaps and rng.random() < 0.3:
            gap["depends_on"] = [rng.choice(gaps)["id"] for _ in range(rng.randint(1, 2))]
        if status == "done":
            gap["closed_date"] = f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        gaps.append(gap)
    return gaps


def monolithic(target: Path) -> Path:
    """``target`` as a gaps.yaml like the real one (made once)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": "1", "generated": "2026-04-16",
                "update_instructions": "Set status: done when merged.\n" * 3}
        target.write_text(yaml.safe_dump({"meta": meta, "gaps": made_gaps()},
                                         sort_keys=False, allow_unicode=True, width=88))
    return target


def registry(target: Path, n: int = 160) -> Path:
    """``target`` as a registry directory of ``n`` one-item files (made once)."""
    if not target.is_dir() or len(list(target.glob("*.yaml"))) != n:
        target.mkdir(parents=True, exist_ok=True)
        for gap in made_gaps(n, done=n // 2, open_=n - n // 2 - 2, seed=n):
            gap.pop("depends_on", None)  # a sample of a registry: its deps are elsewhere
            (target / f"{gap['id']}.yaml").write_text(
                yaml.safe_dump([gap], sort_keys=False, allow_unicode=True, width=88))
    return target


def real_backlogs(scratch: Path) -> Path:
    """A directory with ``gaps.yaml`` and ``registry-sample/``: the real ones when
    ``../shared`` is there, else made ones in ``scratch``."""
    if (REAL / "gaps.yaml").is_file() and (REAL / "registry-sample").is_dir():
        return REAL
    monolithic(scratch / "gaps.yaml")
    registry(scratch / "registry-sample")
    return scratch
