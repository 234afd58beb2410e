"""chump-tui benchmarks: each figure beside its floor (same run) and its budget.

Run with ``./dev bench`` (or ``.venv/bin/python bench/run.py [--quick] [--only NAME]``).
Prints a Markdown table and writes ``bench/out/results.json``. Exit status 1 when a
budget does not hold. Figures: see README "Benchmarks".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PY = sys.executable
sys.path.insert(0, str(ROOT))

from tests.backlog_factory import real_backlogs  # noqa: E402

# The real backlogs from ../shared, else made ones of the same shape (543 gaps, a registry
# of 160 files): a clone without ../shared benchmarks too (the table says which it used).
SHARED = real_backlogs(ROOT / "bench" / "out" / "made-backlogs")


@dataclass
class Row:
    figure: str
    measured: str
    floor: str
    budget: str
    ok: bool
    detail: dict[str, object]


def spread(samples: list[float]) -> str:
    return (f"median {statistics.median(samples):.3f}s "
            f"(min {min(samples):.3f}, max {max(samples):.3f}, n={len(samples)})")


def wall(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, cwd=cwd, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {done.stderr.decode()[-400:]}")
    return elapsed


def paired(ours: list[str], floor: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Alternate the two commands so machine noise hits both alike."""
    a, b = [], []
    wall(ours)
    wall(floor)  # warm the page cache for both
    for _ in range(runs):
        a.append(wall(ours))
        b.append(wall(floor))
    return a, b


def ratio_row(name: str, ours: list[float], floor: list[float], budget: float,
              floor_label: str) -> Row:
    ratio = statistics.median(ours) / statistics.median(floor)
    # Best against best: on a noisy VM the medians can cross, the minimums rarely do.
    best = min(ours) / min(floor)
    return Row(name, f"{spread(ours)} = {ratio:.2f}× floor (best vs best {best:.2f}×)",
               f"{floor_label}: {spread(floor)}", f"≤ {budget}× floor", ratio <= budget,
               {"ours_s": ours, "floor_s": floor, "ratio": ratio, "best_ratio": best})


def floor_yaml(target: Path) -> list[str]:
    code = ("import sys, yaml, pathlib\n"
            "p = pathlib.Path(sys.argv[1])\n"
            "files = sorted(p.glob('*.yaml')) if p.is_dir() else [p]\n"
            "for f in files:\n"
            "    yaml.load(f.read_bytes(), Loader=yaml.CSafeLoader)\n")
    return [PY, "-c", code, str(target)]


# ----------------------------------------------------------------- figures
def bench_dry_run(runs: int) -> Row:
    backlog = SHARED / "gaps.yaml"
    ours, floor = paired([PY, "-m", "chump_tui", "--no-tui", "--backlog", str(backlog)],
                         floor_yaml(backlog), runs)
    return ratio_row("plain --dry-run, 543-gap gaps.yaml (whole process)", ours, floor, 1.5,
                     "python -c yaml C loader")


def make_registry(n: int) -> Path:
    target = OUT / f"registry-{n}"
    if target.is_dir() and len(list(target.glob("*.yaml"))) == n:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    sample = sorted((SHARED / "registry-sample").glob("*.yaml"))
    for i in range(n):
        src = sample[i % len(sample)]
        text = src.read_text(encoding="utf-8")
        copy = i // len(sample)
        if copy:
            gid = src.stem
            text = text.replace(f"id: {gid}", f"id: {gid}-C{copy}", 1)
            name = f"{gid}-C{copy}.yaml"
        else:
            name = src.name
        (target / name).write_text(text, encoding="utf-8")
    return target


def bench_registry(runs: int) -> Row:
    registry = make_registry(4000)
    ours, floor = paired([PY, "-m", "chump_tui", "--no-tui", "--backlog", str(registry)],
                         floor_yaml(registry), runs)
    return ratio_row("plain --dry-run, 4,000-file registry dir", ours, floor, 1.5,
                     "python -c yaml C loader per file")


def first_frame(which: str, backlog: Path) -> float:
    env = dict(os.environ, BENCH_T0=repr(time.time()))
    done = subprocess.run([PY, str(HERE / "first_frame.py"), which, str(backlog)],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-400:])
    return float(done.stdout.strip().splitlines()[-1])


def bench_first_frame(runs: int) -> Row:
    backlog = SHARED / "gaps.yaml"
    ours, floor = [], []
    first_frame("console", backlog)
    first_frame("empty", backlog)
    for _ in range(runs):
        ours.append(first_frame("console", backlog))
        floor.append(first_frame("empty", backlog))
    return ratio_row("console: start to first frame, 543-gap backlog shown", ours, floor, 1.5,
                     "empty Textual app")


def in_child(figure: str, *args: str, timeout: float = 300) -> dict[str, object]:
    done = subprocess.run([PY, str(HERE / "console_figures.py"), figure, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_filter(runs: int) -> Row:
    r = in_child("filter", "10000")
    p95 = float(str(r["p95_ms"]))
    return Row("backlog of 10,000 gaps: filter/search keystroke to redraw",
               f"p95 {p95:.1f} ms (median {r['median_ms']:.1f}, max {r['max_ms']:.1f}, "
               f"n={r['n']})", "-", "p95 ≤ 100 ms", p95 <= 100, r)


def bench_flood(seconds: str) -> Row:
    r = in_child("flood", "100", "200", seconds, timeout=600)
    ok = (float(str(r["key_p95_ms"])) <= 150 and float(str(r["cpu_cores"])) <= 1.0
          and float(str(r["rss_mb"])) <= 300 and r["shipped"] == r["agents"]
          and r["reflections"] == r["agents"])
    return Row(f"{r['agents']} agents × {r['lines_per_s']} lines/s for {r['seconds']} s",
               f"key→redraw p95 {r['key_p95_ms']:.0f} ms; CPU {r['cpu_cores']:.2f} core; "
               f"RSS {r['rss_mb']:.0f} MB; {r['shipped']}/{r['agents']} shipped, "
               f"{r['reflections']} reflections; {r['lines']} lines seen", "-",
               "p95 ≤ 150 ms; ≤ 1 core; ≤ 300 MB; no outcome lost", ok, r)


def bench_stream(seconds: str) -> Row:
    r = in_child("stream", "100", "20", seconds, timeout=600)
    ok = (float(str(r["key_p95_ms"])) <= 150 and float(str(r["cpu_cores"])) <= 0.6
          and float(str(r["rss_mb"])) <= 300 and r["shipped"] == r["agents"]
          and r["costs_recorded"] == r["agents"])
    return Row(f"{r['agents']} agents × {r['lines_per_s']} stream-json events/s (4 KB tool "
               f"results, 1 MB lines) for {r['seconds']} s",
               f"key→redraw p95 {r['key_p95_ms']:.0f} ms; CPU {r['cpu_cores']:.2f} core; "
               f"RSS {r['rss_mb']:.0f} MB; {r['shipped']}/{r['agents']} shipped, "
               f"{r['costs_recorded']} costs recorded", "-",
               "p95 ≤ 150 ms; ≤ 0.6 core; ≤ 300 MB; every cost", ok, r)


def bench_mixed(seconds: str) -> Row:
    r = in_child("mixed", "100", "20", seconds, timeout=600)
    ok = (float(str(r["key_p95_ms"])) <= 150 and float(str(r["cpu_cores"])) <= 0.6
          and float(str(r["rss_mb"])) <= 300 and r["shipped"] == r["agents"]
          and r["tokens_recorded"] == r["agents"])
    return Row(f"{r['agents']} agents, claude / codex / opencode / gemini event streams × "
               f"{r['lines_per_s']} events/s for {r['seconds']} s",
               f"key→redraw p95 {r['key_p95_ms']:.0f} ms; CPU {r['cpu_cores']:.2f} core; "
               f"RSS {r['rss_mb']:.0f} MB; {r['shipped']}/{r['agents']} shipped, tokens for "
               f"{r['tokens_recorded']}", "-", "p95 ≤ 150 ms; ≤ 0.6 core; ≤ 300 MB", ok, r)


def bench_soak(seconds: str) -> Row:
    r = in_child("soak", "2000", "25", seconds, timeout=int(float(seconds)) + 600)
    early, late = r["key_p95_first_half_ms"], r["key_p95_second_half_ms"]
    ok = (float(str(r["rss_growth"])) <= 0.10 and early is not None and late is not None
          and float(str(early)) <= 150 and float(str(late)) <= 150)
    curve = r["curve"]
    assert isinstance(curve, list)
    points = ", ".join(f"{int(t)}s {mb:.0f} MB" for t, mb, _n in curve[::3])
    return Row(f"continuous mode, 2,000-gap backlog, short stream-json agents, {r['seconds']} s",
               f"{r['attempts']} attempts; RSS {r['rss_warm_mb']:.0f} → {r['rss_end_mb']:.0f} "
               f"MB ({100 * float(str(r['rss_growth'])):+.0f}% after warm-up); key→redraw p95 "
               f"{float(str(early)):.0f} / {float(str(late)):.0f} ms (first / second half); "
               f"curve: {points}", "-", "RSS growth ≤ 10%; p95 ≤ 150 ms throughout", ok, r)


def bench_gh_calls(runs: int) -> Row:
    r = in_child("gh", "1,10,100")
    per_poll = r["calls_per_poll"]
    assert isinstance(per_poll, dict)
    ok = all(v == 1.0 for v in per_poll.values())
    shown = ", ".join(f"{k} branches: {v:g}" for k, v in per_poll.items())
    return Row("gh calls per poll", shown, "-", "1, 1, 1", ok, r)


def bench_kill(seconds: str) -> Row:
    r = in_child("kill", "20", seconds, timeout=300)
    ok = (float(str(r["max_line_delay_s"])) <= float(str(r["tick_s"]))
          and float(str(r["max_loop_stall_ms"])) <= 100 and bool(r["killed_after_grace"]))
    return Row(f"kill with {r['grace_s']:g} s grace while {r['others']} others run",
               f"others' lines delayed ≤ {r['max_line_delay_s']:.2f} s (tick {r['tick_s']:g} s); "
               f"UI loop stall max {r['max_loop_stall_ms']:.0f} ms "
               f"(p99 {r['p99_loop_stall_ms']:.0f})",
               "-", "≤ 1 tick; UI stall ≤ 100 ms", ok, r)


def bench_fleet(seconds: str, output: str = "full") -> Row:
    done = subprocess.run([PY, str(HERE / "fleet_figure.py"), "3", "30", "20", seconds, output],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    r = json.loads(done.stdout.strip().splitlines()[-1])
    ok = (r["line_p95_ms"] <= 250 and r["key_p95_ms"] <= 150 and r["cpu_cores"] <= 0.6
          and r["shipped"] == r["agents"])
    return Row(f"fleet ({output}): {r['workers']} workers × {r['agents'] // r['workers']} "
               f"agents × {r['rate']} stream-json events/s through nats-server for "
               f"{r['seconds']:g} s (all on this machine)",
               f"agent line → console frame p95 {r['line_p95_ms']:.0f} ms (median "
               f"{r['line_median_ms']:.0f}; at the broker p95 {r['broker_p95_ms']:.0f}); "
               f"key→redraw p95 {r['key_p95_ms']:.0f} ms; console CPU {r['cpu_cores']:.2f} "
               f"core; {r['broker_msgs_per_agent_s']:.1f} broker messages and "
               f"{r['broker_bytes_per_agent_s'] / 1024:.1f} KB per agent per s; "
               f"{r['shipped']}/{r['agents']} shipped", "-",
               "line p95 ≤ 250 ms; key p95 ≤ 150 ms; ≤ 0.6 core", ok, r)


def bench_fleet_scale(hosts: int, per_host: int, seconds: str) -> Row:
    done = subprocess.run([PY, str(HERE / "fleet_load.py"), str(hosts), str(per_host), "20",
                           seconds], capture_output=True, text=True, cwd=ROOT, timeout=1800,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    r = json.loads(done.stdout.strip().splitlines()[-1])
    n = r["agents"]
    ok = (r["cpu_cores"] <= 0.5 and r["key_p95_ms"] <= 150 and r["line_p95_ms"] <= 250
          and r["broker_msgs_per_agent_s"] <= 2 and r["broker_bytes_per_agent_s"] <= 2048
          and r["shipped"] == n and r["costs_recorded"] == n and r["attempts"] == n
          and r["reflections"] == r["reflected_gaps"] == n)
    return Row(f"fleet at scale: {r['hosts']} simulated hosts × {per_host} agents × "
               f"{r['rate']} stream-json events/s through nats-server for {r['seconds']:g} s "
               "(the load generator speaks the wire; the console is real)",
               f"console CPU {r['cpu_cores']:.2f} core; key→redraw p95 "
               f"{r['key_p95_ms']:.0f} ms; the selected agent's line → frame p95 "
               f"{r['line_p95_ms']:.0f} ms (median {r['line_median_ms']:.0f}); "
               f"{r['broker_msgs_per_agent_s']:.2f} broker messages and "
               f"{r['broker_bytes_per_agent_s'] / 1024:.2f} KB per agent per s; RSS "
               f"{r['rss_mb']:.0f} MB; all {n} running after {r['ramp_s']:.0f} s; "
               f"{r['shipped']}/{n} shipped, {r['costs_recorded']} costs, {r['attempts']} "
               f"attempts, {r['reflections']} reflections", "-",
               "≤ 0.5 core; key p95 ≤ 150 ms; line p95 ≤ 250 ms; ≤ 2 messages and ≤ 2 KB "
               "per agent per s; every outcome and cost once", ok, r)


FIGURES: dict[str, Callable[[argparse.Namespace], Row]] = {
    "dry_run": lambda a: bench_dry_run(a.runs),
    "registry": lambda a: bench_registry(a.runs),
    "first_frame": lambda a: bench_first_frame(a.runs),
    "filter": lambda a: bench_filter(a.runs),
    "flood": lambda a: bench_flood("8" if a.quick else "30"),
    "stream": lambda a: bench_stream("8" if a.quick else "30"),
    "mixed": lambda a: bench_mixed("8" if a.quick else "30"),
    "soak": lambda a: bench_soak("60" if a.quick else "300"),
    "gh": lambda a: bench_gh_calls(a.runs),
    "kill": lambda a: bench_kill("5" if a.quick else "30"),
    "fleet": lambda a: bench_fleet("10" if a.quick else "30"),
    "fleet_summary": lambda a: bench_fleet("10" if a.quick else "30", "summary"),
    "fleet_scale": lambda a: bench_fleet_scale(10 if a.quick else 30, 34,
                                               "10" if a.quick else "60"),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        mem = "?"
    return (f"{time.strftime('%Y-%m-%d')}, {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} cores ({cpu}), {mem} RAM, Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="repetitions for timed commands")
    parser.add_argument("--quick", action="store_true", help="shorter flood and kill figures")
    parser.add_argument("--only", action="append", choices=sorted(FIGURES))
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    print(f"backlogs: {SHARED}", file=sys.stderr)
    # What pip does for an installed package. An editable install under
    # PYTHONDONTWRITEBYTECODE (set on this machine) would otherwise recompile every
    # chump_tui module in every timed run, while the floors' libraries are compiled.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "chump_tui")], check=True)
    rows = []
    for name in args.only or list(FIGURES):
        print(f"… {name}", file=sys.stderr, flush=True)
        rows.append(FIGURES[name](args))
    print(f"\nMachine: {machine()}\n")
    print("| figure | measured | floor (same run) | budget | holds |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.figure} | {r.measured} | {r.floor} | {r.budget} | "
              f"{'yes' if r.ok else '**no**'} |")
    (OUT / "results.json").write_text(json.dumps(
        {"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2, default=str))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
