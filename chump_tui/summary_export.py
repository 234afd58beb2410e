"""The end-of-run summary as data: rows per attempt, the reference's totals line, export files."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from chump_tui.crash_log import draw_failure
from chump_tui.dispatch_record import Dispatch, fmt_duration
from chump_tui.numbers import short_count, whole_seconds
from chump_tui.outside_text import visible
from chump_tui.pricing import Cost, cost_of
from chump_tui.safe_fs import open_nofollow, real_dir


def totals_line(dispatches: Iterable[Dispatch]) -> str:
    """``shipped=… ci_failed=… stalled=… killed=… spawn_failures=…``, as the reference prints."""
    counts = {"shipped": 0, "ci_failed": 0, "stalled": 0, "killed": 0}
    spawn_failures = taken = 0
    for d in dispatches:
        if d.outcome is not None:
            counts[d.outcome.kind] += 1
        elif d.failed_to_start:
            spawn_failures += 1
        elif d.taken_by:
            taken += 1
    # Gaps another session held are no failure; counted apart, only when there are any.
    return (f"shipped={counts['shipped']}  ci_failed={counts['ci_failed']}  "
            f"stalled={counts['stalled']}  killed={counts['killed']}  "
            f"spawn_failures={spawn_failures}" + (f"  taken={taken}" if taken else ""))


def killed_note(dispatches: Iterable[Dispatch]) -> str | None:
    """The reference counts an agent that exited non-zero on its own as killed: say how
    many of ``killed`` nobody killed (each row shows its real outcome, EXITED n)."""
    exited = sum(1 for d in dispatches if d.label().startswith("EXITED "))
    if not exited:
        return None
    return f"killed counts {exited} agent(s) that exited non-zero on their own (EXITED n)"


def attempt_cost(d: Dispatch) -> Cost:
    return cost_of(d.cost_usd, d.model, d.tokens_in, d.tokens_out)


def cost_line(dispatches: Iterable[Dispatch]) -> str | None:
    """``cost=$0.0412  turns=12  tokens_in=35.2k  tokens_out=2.1k`` over every attempt that
    reported anything, whatever its outcome: dollars as the harness said them, else
    estimated (``≈``) where the model's price is known; a total that leaves attempts out
    says how many. None when no attempt reported anything."""
    rows = [d for d in dispatches if d.turns is not None or d.cost_usd is not None]
    if not rows:
        return None
    costs = [attempt_cost(d) for d in rows]
    known = [c for c in costs if c.usd is not None]
    total = Cost(sum(c.usd for c in known if c.usd is not None) if known else None,
                 any(c.estimated for c in known))
    parts = [f"cost={total.text()}",
             f"turns={sum(d.turns or 0 for d in rows)}",
             f"tokens_in={short_count(sum(d.tokens_in or 0 for d in rows))}",
             f"tokens_out={short_count(sum(d.tokens_out or 0 for d in rows))}"]
    errors = sum(d.tool_errors or 0 for d in rows)
    if errors:
        parts.append(f"tool_errors={errors}")
    missing = len(costs) - len(known)
    if known and missing:
        parts.append(f"({missing} attempt(s) without a cost are not in it)")
    return "  ".join(parts)


def runs_line(dispatches: Iterable[Dispatch]) -> str | None:
    """``follow_ups=2  ci_repairs=1  their_cost=$0.0412``: the runs after the first, over
    every attempt; None when there were none."""
    rows = [d for d in dispatches if d.run > 1]
    if not rows:
        return None
    costs = [c for c in (d.later_runs_cost() for d in rows) if c is not None]
    parts = [f"follow_ups={sum(d.follow_ups for d in rows)}",
             f"ci_repairs={sum(d.ci_repairs for d in rows)}"]
    if costs:
        parts.append(f"their_cost=${sum(costs):.4f}")
    return "  ".join(parts)


def fleet_cost(dispatches: Iterable[Dispatch]) -> float | None:
    costs = [c.usd for c in map(attempt_cost, dispatches) if c.usd is not None]
    return sum(costs) if costs else None


def summary_rows(dispatches: Iterable[Dispatch], now: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for d in dispatches:
        try:
            rows.append(summary_row(d, now))
        except Exception as exc:  # one row that cannot be shown never hides the others
            rows.append({"key": d.key, "gap": d.gap_id, "attempt": d.attempt,
                         "branch": d.branch, "outcome": "UNREADABLE", "pr": None,
                         "duration_s": 0, "reason": draw_failure(f"the row of {d.key}", exc),
                         "turns": None, "tokens_in": None, "tokens_out": None,
                         "cost_usd": None, "host": d.host or None})
    return rows


def summary_row(d: Dispatch, now: float) -> dict[str, object]:
    pr = d.outcome.pr_number if d.outcome is not None else None
    if pr is None and d.pr is not None:
        pr = d.pr.number
    return {
        "key": d.key, "gap": d.gap_id, "attempt": d.attempt, "branch": d.branch,
        "outcome": d.label(), "pr": pr, "duration_s": whole_seconds(d.duration_s(now)),
        "reason": d.reason(), "backend": d.backend, "harness": d.harness,
        "worktree": d.worktree, "reflection_written": d.reflection_written,
        "turns": d.turns, "tokens_in": d.tokens_in, "tokens_out": d.tokens_out,
        "cost_usd": d.cost_usd, "cost_estimate_usd": _estimate(d), "model": d.model or None,
        "tool_errors": d.tool_errors, "host": d.host or None,
        "follow_ups": d.follow_ups, "ci_repairs": d.ci_repairs,
        "later_runs_cost_usd": d.later_runs_cost(),
    }


def _estimate(d: Dispatch) -> float | None:
    cost = attempt_cost(d)
    return cost.usd if cost.estimated else None


def export_summary(dispatches: list[Dispatch], directory: Path, now: float,
                   reflections_target: str) -> list[Path]:
    """Write ``chump-tui-summary-<stamp>.json`` and ``.md``; returns both paths."""
    real_dir(directory)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    rows = summary_rows(dispatches, now)
    totals = totals_line(dispatches)
    costs = cost_line(dispatches)
    runs = runs_line(dispatches)
    json_path = directory / f"chump-tui-summary-{stamp}.json"
    md_path = directory / f"chump-tui-summary-{stamp}.md"
    note = killed_note(dispatches)
    _write(json_path, json.dumps({"generated_at": stamp, "totals": totals, "costs": costs,
                                  "runs": runs,
                                  "cost_usd": fleet_cost(dispatches), "killed_note": note,
                                  "reflections": reflections_target, "rows": rows}, indent=2))
    lines = [f"# chump-tui summary {stamp}", "", f"**{totals}**", ""]
    if note:
        lines += [_md(note), ""]
    if costs:
        lines += [f"**{_md(costs)}**", ""]
    if runs:
        lines += [_md(runs), ""]
    lines += [f"Reflections: {_md(reflections_target)}", "",
              "| gap | # | branch | agent | outcome | PR | duration | turns | tokens in/out "
              "| tool errors | follow-ups / CI repairs | cost | reason |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r, d in zip(rows, dispatches, strict=True):
        pr = f"#{r['pr']}" if r["pr"] else "-"
        tokens = (f"{short_count(d.tokens_in or 0)} / {short_count(d.tokens_out or 0)}"
                  if d.turns is not None else "-")
        agent = (d.harness or d.backend or "-") + (f" on {d.host}" if d.host else "")
        lines.append(f"| {_md(r['gap'])} | {r['attempt']} | {_md(r['branch'])} | "
                     f"{_md(agent)} | {_md(r['outcome'])} | {pr} | "
                     f"{fmt_duration(float(str(r['duration_s'])))} | "
                     f"{d.turns if d.turns is not None else '-'} | {tokens} | "
                     f"{d.tool_errors or '-'} | {runs_cell(d)} | {attempt_cost(d).text()} | "
                     f"{_md(r['reason'])} |")
    _write(md_path, "\n".join(lines) + "\n")
    return [json_path, md_path]


def runs_cell(d: Dispatch) -> str:
    """``2 / 1`` (follow-ups / CI repairs), ``-`` for an attempt of one run."""
    return f"{d.follow_ups} / {d.ci_repairs}" if d.run > 1 else "-"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#!"})


def _md(value: object) -> str:
    """A Markdown table cell from outside text: visible, one line, nothing it could start."""
    return visible(value).translate(_MD_SPECIAL)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
