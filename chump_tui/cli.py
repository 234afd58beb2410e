"""Command line: flag parsing and the choice of front end (console, plain, self-test).

Plain mode and the self-test never import Textual; the console is imported
only when it is about to run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from chump_tui.errors import ChumpError
from chump_tui.gc_pause import pause_for_startup, startup_done

# Kept here (equal to chump_tui.monitor's) so parsing flags imports nothing heavy;
# a test checks they stay equal.
DEFAULT_TICK_S = 30.0
DEFAULT_KILL_GRACE_S = 30.0

# typing.TYPE_CHECKING without importing typing (see chump_tui.backlog).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from chump_tui.preload import BacklogPreload
    from chump_tui.tui.app import ChumpApp

PROG = "chump-tui"


class Options:
    """The parsed flags, one attribute each (a plain class: see chump_tui.backlog.Gap)."""

    backlog: Path | None
    max_parallel: int
    dry_run: bool
    watch: bool
    no_reflect: bool
    self_test: bool
    repo_root: Path | None
    base_ref: str
    no_tui: bool
    tick_s: float
    kill_grace_s: float
    soft_deadline_s: float | None
    continuous: bool
    demo: bool

    def __init__(self, flags: argparse.Namespace) -> None:
        vars(self).update(vars(flags))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (try --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG, allow_abbrev=False,
        description="Dispatch a backlog of gaps to parallel AI coding agents and watch them "
                    "until their pull requests land.",
        epilog="Without --no-tui and with a terminal, the console opens; otherwise plain mode "
               "prints the reference's lines. See README.md for keys and files.",
    )
    p.add_argument("--backlog", type=Path, metavar="PATH",
                   help="gaps.yaml or a docs/gaps/ registry dir (default: docs/gaps/ when it "
                        "holds *.yaml files, else docs/gaps.yaml)")
    p.add_argument("--max-parallel", type=_positive_int, default=2, metavar="N",
                   help="agents at once (default 2)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="dry_run", action="store_true", default=True,
                      help="show what would be dispatched, spawn nothing (default)")
    mode.add_argument("--no-dry-run", "--execute", dest="dry_run", action="store_false",
                      help="really create worktrees and spawn agents")
    p.add_argument("--watch", "--blocking", action="store_true",
                   help="plain mode: monitor until every agent reaches an outcome")
    p.add_argument("--continuous", action="store_true",
                   help="when an agent ends, dispatch the next pickable gap (up to max-parallel)")
    p.add_argument("--no-reflect", action="store_true",
                   help="write no reflection rows to sessions/chump_memory.db")
    p.add_argument("--self-test", action="store_true",
                   help="headless end-to-end run over the bundled 4-gap backlog; no claude/gh/git")
    p.add_argument("--demo", action="store_true",
                   help="the console on a bundled demo backlog with simulated agents and GitHub")
    p.add_argument("--repo-root", type=Path, metavar="PATH",
                   help="repository root (default: git rev-parse --show-toplevel)")
    p.add_argument("--base-ref", default="origin/main", metavar="REF",
                   help="ref new worktrees branch from (default origin/main)")
    p.add_argument("--no-tui", action="store_true",
                   help="plain mode (also chosen when stdout is not a terminal)")
    p.add_argument("--tick", dest="tick_s", type=_seconds, default=DEFAULT_TICK_S,
                   metavar="SECONDS", help=f"GitHub poll interval (default {DEFAULT_TICK_S:g})")
    p.add_argument("--kill-grace", dest="kill_grace_s", type=_seconds,
                   default=DEFAULT_KILL_GRACE_S, metavar="SECONDS",
                   help=f"SIGTERM-to-SIGKILL grace (default {DEFAULT_KILL_GRACE_S:g})")
    p.add_argument("--soft-deadline", dest="soft_deadline_s", type=_seconds, default=None,
                   metavar="SECONDS", help="soft deadline for every gap (overrides the "
                                           "effort table s=20m m=60m l=180m xl=360m)")
    return p


def parse_args(argv: Sequence[str] | None) -> Options:
    ns = build_parser().parse_args(argv)
    if ns.tick_s <= 0:
        build_parser().error("--tick must be greater than 0")
    return Options(ns)


def start_console(opts: Options, run_app: Callable[[ChumpApp], object] | None = None) -> int:
    """The console's start-up order; ``run_app`` replaces ``app.run()`` (the benchmark's seam)."""
    pause_for_startup()  # the app turns the collector back on after its first frame
    try:
        preload = _start_preload(opts)  # before Textual is imported: they run in parallel
        from chump_tui.tui.launch import run_console

        return run_console(opts, preload, run_app)
    finally:
        startup_done()


def _start_preload(opts: Options) -> BacklogPreload | None:
    if opts.demo:
        return None
    from chump_tui.backlog import default_backlog_path
    from chump_tui.preload import BacklogPreload
    from chump_tui.repo import backlog_base

    path = (opts.backlog if opts.backlog is not None
            else default_backlog_path(backlog_base(opts.repo_root)))
    return BacklogPreload(path) if path.exists() else None


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        if opts.self_test:
            if opts.no_tui:
                from chump_tui.plain import run_self_test_plain

                return run_self_test_plain(opts)
            from chump_tui.tui.self_test_tui import run_self_test_tui

            return run_self_test_tui(opts)
        if not opts.demo and (opts.no_tui or not sys.stdout.isatty()):
            from chump_tui.plain import run_plain

            return run_plain(opts)
        return start_console(opts)
    except ChumpError as exc:
        from chump_tui.outside_text import visible

        print(visible(f"{PROG}: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
