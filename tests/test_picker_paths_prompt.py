"""Picker (upstream's fixed rule), path derivation and the prompt, ported from the seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from chump_tui.backlog import Gap
from chump_tui.paths import dispatch_paths, unsafe_id_reason
from chump_tui.picker import pick_reason, pickable_gaps
from chump_tui.prompt import build_prompt, parse_gap_id_from_prompt


def gap(id: str, priority: str = "P1", effort: str = "m", status: str = "open",
        deps: tuple[str, ...] = ()) -> Gap:
    return Gap(id=id, title="t", priority=priority, effort=effort, status=status, depends_on=deps)


def test_picker_includes_p0_and_sorts_stably_by_tier() -> None:
    gaps = [gap("A", "P2"), gap("B", "P1"), gap("C", "P0"), gap("D", "P1"), gap("E", "P2")]
    assert [g.id for g in pickable_gaps(gaps, 10, set())] == ["C", "B", "D", "A", "E"]
    assert [g.id for g in pickable_gaps(gaps, 2, set())] == ["C", "B"]
    assert pickable_gaps(gaps, 0, set()) == []


def test_picker_filters_status_priority_effort_and_deps() -> None:
    gaps = [gap("DONE", status="done"), gap("P3", "P3"), gap("XL", effort="xl"),
            gap("BLOCKED", deps=("DONE", "MISSING")), gap("READY", deps=("DONE",)),
            gap("NOPRIO", ""), gap("L", effort="l")]
    done = {"DONE"}
    assert [g.id for g in pickable_gaps(gaps, 10, done)] == ["READY", "L"]


def test_pick_reason_explains_every_refusal() -> None:
    by_id = {"D": gap("D", status="done"), "O": gap("O")}
    done = {"D"}
    assert pick_reason(gap("X", status="done"), done) == "done"
    assert pick_reason(gap("X", status="deferred"), done) == "status deferred"
    assert pick_reason(gap("X", status=""), done) == "status missing"
    assert pick_reason(gap("X", "P3"), done) == "priority P3"
    assert pick_reason(gap("X", effort="xl"), done) == "effort xl"
    assert pick_reason(gap("X", deps=("D", "O", "Z")), done, by_id) == "needs O (open), Z (unknown)"
    assert pick_reason(gap("../etc"), done) is not None
    assert pick_reason(gap("OK-1", deps=("D",)), done, by_id) is None


def test_status_done_is_exact() -> None:
    assert [g.id for g in pickable_gaps([gap("A", deps=("B",))], 5, {"b"})] == []


def test_dispatch_paths_lowercases_and_replaces_underscores() -> None:
    wt, branch = dispatch_paths(Path("/repo"), "AUTO_013")
    assert wt == Path("/repo/.claude/worktrees/auto-013")
    assert branch == "claude/auto-013"


def test_dispatch_paths_preserves_repo_root_case() -> None:
    wt, branch = dispatch_paths(Path("/Users/JeffAdkins/Projects/Chump"), "MEM-007")
    assert wt == Path("/Users/JeffAdkins/Projects/Chump/.claude/worktrees/mem-007")
    assert branch == "claude/mem-007"


@pytest.mark.parametrize("bad", ["../x", "a/b", "-x", "a..b", "x.lock", "a b", "x;rm -rf", "",
                                 "é", "x" * 101, "a."])
def test_unsafe_ids_are_refused(bad: str) -> None:
    assert unsafe_id_reason(bad) is not None


@pytest.mark.parametrize("good", ["AUTO-013", "EVAL-027c", "auto_013", "A.1"])
def test_safe_ids_pass(good: str) -> None:
    assert unsafe_id_reason(good) is None


def test_build_prompt_contains_gap_id_and_ship_command() -> None:
    prompt = build_prompt("AUTO-013", Path("/nonexistent"))
    assert "AUTO-013" in prompt
    assert "scripts/bot-merge.sh --gap AUTO-013 --auto-merge" in prompt
    assert prompt.endswith("Reply ONLY with the PR number.")


def test_build_prompt_injects_dispatch_rules_when_present(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "CHUMP_DISPATCH_RULES.md").write_text("## rule\n- do the thing\n")
    prompt = build_prompt("MEM-001", tmp_path)
    assert prompt.startswith("## rule\n- do the thing\n\n\n---\n\n")
    assert "MEM-001" in prompt


def test_parse_gap_id_from_prompt_round_trips(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "CHUMP_DISPATCH_RULES.md").write_text(
        "Example: working on gap FAKE-1. The gap is already claimed\n")
    for gid in ("COG-025", "AUTO-013", "EVAL-027c", "auto_013"):
        assert parse_gap_id_from_prompt(build_prompt(gid, tmp_path)) == gid
    assert parse_gap_id_from_prompt("hello world") is None
    assert parse_gap_id_from_prompt("working on gap ") is None
