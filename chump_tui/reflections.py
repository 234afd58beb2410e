"""One reflection row per terminal outcome, in the reference's exact schema.

``SqliteReflectionWriter`` writes ``<repo_root>/sessions/chump_memory.db``
(tables ``chump_reflections`` + ``chump_improvement_targets``), tagged
``error_pattern = 'orchestrator_dispatch'``. Writers raise on failure; the
engine keeps the outcome and retries, so a locked DB never loses a row.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chump_tui.monitor import DispatchOutcome
from chump_tui.safe_fs import is_link, real_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS chump_reflections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id INTEGER,
    task_id INTEGER,
    intended_goal TEXT NOT NULL DEFAULT '',
    observed_outcome TEXT NOT NULL DEFAULT '',
    outcome_class TEXT NOT NULL DEFAULT 'failure',
    error_pattern TEXT,
    hypothesis TEXT NOT NULL DEFAULT '',
    surprisal_at_reflect REAL,
    confidence_at_reflect REAL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS chump_improvement_targets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reflection_id INTEGER NOT NULL,
    directive TEXT NOT NULL,
    priority TEXT NOT NULL DEFAULT 'medium',
    scope TEXT,
    actioned_as TEXT,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
"""

ERROR_PATTERN = "orchestrator_dispatch"

# Our own side table, in the same transaction as the reference's two rows: a
# dispatch whose uid is here has its reflection, so a retry after a crash between
# the commit and our state save does not write it twice. The reference's tables
# are untouched.
KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS chump_tui_reflection_keys (
    dispatch_uid TEXT PRIMARY KEY,
    reflection_id INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
"""


def gap_domain(gap_id: str) -> str:
    """``AUTO-013`` -> ``auto``; ``unknown`` without a ``-`` prefix."""
    prefix, sep, _ = gap_id.partition("-")
    return prefix.lower() if sep and prefix else "unknown"


def _rust_option(value: int | None) -> str:
    return "None" if value is None else f"Some({value})"


@dataclass(frozen=True)
class DispatchReflection:
    gap_id: str
    effort: str
    gap_domain: str
    outcome: str  # shipped | ci_failed | stalled | killed
    duration_s: int
    parallel_siblings: int
    pr_number: int | None
    notes: str
    dispatch_uid: str = ""  # makes the write idempotent; not part of the reference's rows

    @classmethod
    def build(cls, gap_id: str, effort: str, outcome: DispatchOutcome, duration_s: int,
              parallel_siblings: int, backend: str, signal_lines: list[str],
              dispatch_uid: str = "", runs: str = "") -> DispatchReflection:
        """``runs``: how many follow-ups and CI repairs it took (``ci_repairs=1``), if any."""
        tail = "\n".join(signal_lines)
        head = f"backend={backend} {runs}" if runs else f"backend={backend}"
        notes = f"{head} {tail}" if tail else head
        return cls(gap_id, effort, gap_domain(gap_id), outcome.kind, max(0, duration_s),
                   max(0, parallel_siblings), outcome.pr_number, notes, dispatch_uid)

    def directive(self) -> str:
        first = self.notes.splitlines()[0].strip() if self.notes else ""
        return (
            f"dispatched gap={self.gap_id} effort={self.effort} domain={self.gap_domain} "
            f"outcome={self.outcome} duration_s={self.duration_s} "
            f"parallel_siblings={self.parallel_siblings} "
            f"pr_number={_rust_option(self.pr_number)} notes={first}"
        )

    @property
    def outcome_class(self) -> str:
        return "success" if self.outcome == "shipped" else "failure"

    @property
    def priority(self) -> str:
        return {"killed": "high", "ci_failed": "high", "stalled": "medium"}.get(self.outcome, "low")


class ReflectionWriter(Protocol):
    def write(self, reflection: DispatchReflection) -> None: ...

    def describe(self) -> str: ...


class NoopReflectionWriter:
    def write(self, reflection: DispatchReflection) -> None:
        return None

    def describe(self) -> str:
        return "nowhere (--no-reflect)"


class MemoryReflectionWriter:
    def __init__(self) -> None:
        self._rows: list[DispatchReflection] = []
        self._lock = threading.Lock()

    def write(self, reflection: DispatchReflection) -> None:
        with self._lock:
            if reflection.dispatch_uid and any(
                    r.dispatch_uid == reflection.dispatch_uid for r in self._rows):
                return
            self._rows.append(reflection)

    def snapshot(self) -> list[DispatchReflection]:
        with self._lock:
            return list(self._rows)

    def describe(self) -> str:
        return "memory"


class SqliteReflectionWriter:
    """Writes both rows in one transaction, so a failure leaves neither behind."""

    def __init__(self, db_path: Path, busy_timeout_s: float = 5.0) -> None:
        self.db_path = db_path
        self.busy_timeout_s = busy_timeout_s

    @classmethod
    def for_repo(cls, repo_root: Path) -> SqliteReflectionWriter:
        return cls(repo_root / "sessions" / "chump_memory.db")

    def describe(self) -> str:
        return str(self.db_path)

    def write(self, reflection: DispatchReflection) -> None:
        self.write_many([reflection])

    def write_many(self, reflections: list[DispatchReflection]) -> None:
        """All in one transaction (one sync to disk): continuous mode ends several attempts
        a second, and a connection, schema check and commit each would fall behind."""
        import sqlite3  # on first write: the console's first frame does not wait for it

        real_dir(self.db_path.parent)
        for path in (self.db_path, *(self.db_path.with_name(self.db_path.name + suffix)
                                     for suffix in ("-journal", "-wal", "-shm"))):
            if is_link(path):  # SQLite would write through it
                raise OSError(f"{path} is a symbolic link; not followed")
        fresh = not self.db_path.exists()
        conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s)
        try:
            if fresh:
                with contextlib.suppress(OSError):
                    os.chmod(self.db_path, 0o600)
            conn.executescript(SCHEMA + KEYS_SCHEMA)
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for reflection in reflections:
                    _insert(conn, reflection)
        finally:
            conn.close()


def _insert(conn: Any, reflection: DispatchReflection) -> None:
    """Both rows of one reflection, unless its dispatch uid was written already."""
    if reflection.dispatch_uid and conn.execute(
            "SELECT 1 FROM chump_tui_reflection_keys WHERE dispatch_uid = ?",
            (reflection.dispatch_uid,)).fetchone():
        return
    cur = conn.execute(
        "INSERT INTO chump_reflections (intended_goal, observed_outcome, "
        "outcome_class, error_pattern, hypothesis) VALUES (?, ?, ?, ?, ?)",
        (
            f"ship gap {reflection.gap_id}",
            f"outcome={reflection.outcome} duration_s={reflection.duration_s} "
            f"pr={_rust_option(reflection.pr_number)}",
            reflection.outcome_class,
            ERROR_PATTERN,
            reflection.notes,
        ),
    )
    conn.execute(
        "INSERT INTO chump_improvement_targets (reflection_id, directive, priority, "
        "scope) VALUES (?, ?, ?, ?)",
        (cur.lastrowid, reflection.directive(), reflection.priority, reflection.gap_domain),
    )
    if reflection.dispatch_uid:
        conn.execute("INSERT INTO chump_tui_reflection_keys (dispatch_uid, reflection_id) "
                     "VALUES (?, ?)", (reflection.dispatch_uid, cur.lastrowid))
