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
from chump_tui.numbers import dollars, short_count, whole_seconds
from chump_tui.outside_text import visible
from chump_tui.safe_fs import open_nofollow, real_dir


def totals_line(dispatches: Iterable[Dispatch]) -> str:
    """``shipped=… ci_failed=… stalled=… killed=… spawn_failures=…``, as the reference prints."""
    counts = {"shipped": 0, "ci_failed": 0, "stalled": 0, "killed": 0}
    spawn_failures = 0
    for d in dispatches:
        if d.outcome is not None:
            counts[d.outcome.kind] += 1
        elif d.phase == "spawn_failed":
            spawn_failures += 1
    return (f"shipped={counts['shipped']}  ci_failed={counts['ci_failed']}  "
            f"stalled={counts['stalled']}  killed={counts['killed']}  "
            f"spawn_failures={spawn_failures}")


def cost_line(dispatches: Iterable[Dispatch]) -> str | None:
    """``cost=$0.0412  turns=12  tokens_in=35.2k  tokens_out=2.1k`` over every attempt that
    reported them (cost only from harnesses that report one); None when none did."""
    rows = [d for d in dispatches if d.turns is not None or d.cost_usd is not None]
    if not rows:
        return None
    costs = [d.cost_usd for d in rows if d.cost_usd is not None]
    parts = [f"cost={dollars(sum(costs)) if costs else '-'}",
             f"turns={sum(d.turns or 0 for d in rows)}",
             f"tokens_in={short_count(sum(d.tokens_in or 0 for d in rows))}",
             f"tokens_out={short_count(sum(d.tokens_out or 0 for d in rows))}"]
    return "  ".join(parts)


def fleet_cost(dispatches: Iterable[Dispatch]) -> float | None:
    costs = [d.cost_usd for d in dispatches if d.cost_usd is not None]
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
        "cost_usd": d.cost_usd, "host": d.host or None,
    }


def export_summary(dispatches: list[Dispatch], directory: Path, now: float,
                   reflections_target: str) -> list[Path]:
    """Write ``chump-tui-summary-<stamp>.json`` and ``.md``; returns both paths."""
    real_dir(directory)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    rows = summary_rows(dispatches, now)
    totals = totals_line(dispatches)
    costs = cost_line(dispatches)
    json_path = directory / f"chump-tui-summary-{stamp}.json"
    md_path = directory / f"chump-tui-summary-{stamp}.md"
    _write(json_path, json.dumps({"generated_at": stamp, "totals": totals, "costs": costs,
                                  "cost_usd": fleet_cost(dispatches),
                                  "reflections": reflections_target, "rows": rows}, indent=2))
    lines = [f"# chump-tui summary {stamp}", "", f"**{totals}**", ""]
    if costs:
        lines += [f"**{costs}**", ""]
    lines += [f"Reflections: {_md(reflections_target)}", "",
              "| gap | # | branch | agent | outcome | PR | duration | turns | tokens in/out "
              "| cost | reason |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r, d in zip(rows, dispatches, strict=True):
        pr = f"#{r['pr']}" if r["pr"] else "-"
        tokens = (f"{short_count(d.tokens_in or 0)} / {short_count(d.tokens_out or 0)}"
                  if d.turns is not None else "-")
        agent = (d.harness or d.backend or "-") + (f" on {d.host}" if d.host else "")
        lines.append(f"| {_md(r['gap'])} | {r['attempt']} | {_md(r['branch'])} | "
                     f"{_md(agent)} | {_md(r['outcome'])} | {pr} | "
                     f"{fmt_duration(float(str(r['duration_s'])))} | "
                     f"{d.turns if d.turns is not None else '-'} | {tokens} | "
                     f"{dollars(d.cost_usd)} | {_md(r['reason'])} |")
    _write(md_path, "\n".join(lines) + "\n")
    return [json_path, md_path]


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
