"""Reflection rows in a real SQLite file, in the reference's exact schema and text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chump_tui.monitor import DispatchOutcome
from chump_tui.reflections import (
    DispatchReflection,
    MemoryReflectionWriter,
    NoopReflectionWriter,
    SqliteReflectionWriter,
    gap_domain,
)


def refl(gap: str, outcome: DispatchOutcome, notes: list[str] | None = None) -> DispatchReflection:
    return DispatchReflection.build(gap, "m", outcome, 12, 1, "claude", notes or [])


def test_gap_domain() -> None:
    assert gap_domain("AUTO-013") == "auto"
    assert gap_domain("EVAL-027c") == "eval"
    assert gap_domain("noprefix") == "unknown"
    assert gap_domain("-x") == "unknown"


def test_directive_text_is_the_references() -> None:
    r = refl("AUTO-1", DispatchOutcome.shipped(42), ["ERROR: a", "WARN: b"])
    assert r.directive() == (
        "dispatched gap=AUTO-1 effort=m domain=auto outcome=shipped duration_s=12 "
        "parallel_siblings=1 pr_number=Some(42) notes=backend=claude ERROR: a")
    assert refl("X-1", DispatchOutcome.stalled()).directive().endswith(
        "pr_number=None notes=backend=claude")


def test_memory_and_noop_writers() -> None:
    w = MemoryReflectionWriter()
    w.write(refl("A-1", DispatchOutcome.shipped(1)))
    w.write(refl("B-2", DispatchOutcome.killed("x")))
    assert [r.gap_id for r in w.snapshot()] == ["A-1", "B-2"]
    NoopReflectionWriter().write(refl("X", DispatchOutcome.stalled()))


@pytest.mark.parametrize(("outcome", "cls", "prio", "observed"), [
    (DispatchOutcome.shipped(101), "success", "low", "outcome=shipped duration_s=12 pr=Some(101)"),
    (DispatchOutcome.ci_failed(7), "failure", "high", "outcome=ci_failed duration_s=12 pr=Some(7)"),
    (DispatchOutcome.stalled(), "failure", "medium", "outcome=stalled duration_s=12 pr=None"),
    (DispatchOutcome.killed("exit code 1"), "failure", "high", "outcome=killed duration_s=12 pr=None"),
])
def test_sqlite_rows(tmp_path: Path, outcome: DispatchOutcome, cls: str, prio: str,
                     observed: str) -> None:
    writer = SqliteReflectionWriter.for_repo(tmp_path)
    writer.write(refl("EVAL-9", outcome, ["WARN: w"]))
    db = tmp_path / "sessions" / "chump_memory.db"
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT intended_goal, observed_outcome, outcome_class, error_pattern, "
                       "hypothesis FROM chump_reflections").fetchall()
    assert row == [("ship gap EVAL-9", observed, cls, "orchestrator_dispatch",
                    "backend=claude WARN: w")]
    target = conn.execute("SELECT reflection_id, directive, priority, scope "
                          "FROM chump_improvement_targets").fetchall()
    assert len(target) == 1
    assert target[0][0] == 1 and target[0][2] == prio and target[0][3] == "eval"
    assert target[0][1].startswith("dispatched gap=EVAL-9 effort=m domain=eval")
    assert (db.stat().st_mode & 0o077) == 0


def test_sqlite_schema_matches_reference(tmp_path: Path) -> None:
    writer = SqliteReflectionWriter(tmp_path / "x.db")
    writer.write(refl("A-1", DispatchOutcome.shipped(1)))
    conn = sqlite3.connect(tmp_path / "x.db")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(chump_reflections)")]
    assert cols == ["id", "episode_id", "task_id", "intended_goal", "observed_outcome",
                    "outcome_class", "error_pattern", "hypothesis", "surprisal_at_reflect",
                    "confidence_at_reflect", "created_at"]
    cols = [r[1] for r in conn.execute("PRAGMA table_info(chump_improvement_targets)")]
    assert cols == ["id", "reflection_id", "directive", "priority", "scope", "actioned_as",
                    "created_at"]


def test_locked_db_raises_so_the_queue_can_retry(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    writer = SqliteReflectionWriter(db, busy_timeout_s=0.1)
    writer.write(refl("A-1", DispatchOutcome.shipped(1)))
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError):
        writer.write(refl("B-1", DispatchOutcome.shipped(2)))
    holder.rollback()
    writer.write(refl("B-1", DispatchOutcome.shipped(2)))
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM chump_reflections").fetchone() == (2,)
