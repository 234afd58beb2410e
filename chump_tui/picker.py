"""Which gaps can be dispatched now, and a reason for every one that cannot.

``pickable_gaps`` follows upstream's fixed rule (P0 included, stable sort by
priority tier); ``pick_reason`` explains each refusal for the console.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

from chump_tui.backlog import Gap, unusable_ids
from chump_tui.paths import unsafe_id_reason

PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2}


def pick_reason(gap: Gap, done: Set[str], by_id: Mapping[str, Gap] | None = None,
                unusable: Mapping[str, str] | None = None) -> str | None:
    """None when the gap is pickable, else a short reason it is not.

    ``unusable``: ids never dispatched (duplicates, ids sharing a worktree), with why.
    """
    if unusable and gap.id in unusable:
        return unusable[gap.id]
    if gap.status != "open":
        return "done" if gap.status == "done" else f"status {gap.status or 'missing'}"
    if gap.priority not in PRIORITY_RANK:
        return f"priority {gap.priority or 'missing'}"
    if gap.effort == "xl":
        return "effort xl"
    unmet = [d for d in gap.depends_on if d not in done]
    if unmet:
        parts = []
        for dep in unmet:
            known = by_id.get(dep) if by_id is not None else None
            state = known.status or "no status" if known is not None else "unknown"
            parts.append(f"{dep} ({state})")
        return "needs " + ", ".join(parts)
    unsafe = unsafe_id_reason(gap.id)
    if unsafe:
        return unsafe
    return None


def pickable_gaps(gaps: Iterable[Gap], n: int, done: Set[str]) -> list[Gap]:
    """Open P0-P2 non-xl gaps with every dependency done, by priority, first n.

    An id given twice, or two ids that would share a worktree, is never picked.
    """
    gaps = list(gaps)
    unusable = unusable_ids(gaps)
    eligible = [g for g in gaps if pick_reason(g, done, None, unusable) is None]
    eligible.sort(key=lambda g: PRIORITY_RANK[g.priority])  # sort is stable
    return eligible[: max(n, 0)]
