"""Command line: flag parsing and the choice of front end (console, plain, self-test).

Plain mode and the self-test never import Textual; the console is imported
only when it is about to run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from chump_tui.errors import ChumpError
from chump_tui.gc_pause import pause_for_startup, startup_done
from chump_tui.options import Options

# Kept here (equal to chump_tui.monitor's and chump_tui.watchdog's) so parsing flags
# imports nothing heavy; a test checks they stay equal.
DEFAULT_TICK_S = 30.0
DEFAULT_DISPATCH_DEADLINE_S = 900.0
DEFAULT_KILL_GRACE_S = 30.0
DEFAULT_FIRST_OUTPUT_TIMEOUT_S = 120.0
DEFAULT_IDLE_TIMEOUT_S = 600.0

# typing.TYPE_CHECKING without importing typing (see chump_tui.backlog).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from chump_tui.preload import BacklogPreload
    from chump_tui.tui.app import ChumpApp

PROG = "chump-tui"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (try --help)\n")


MAX_PARALLEL = 5000  # a fleet of thirty hosts runs a thousand and more
DAY_S = 86400.0


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value
    return parse


def _seconds(low: float, high: float, zero_ok: bool = True) -> Callable[[str], float]:
    """Seconds in [low, high] (0 allowed when it means 'off'): every value the engine's
    threads will sleep or add to a clock is bounded here, where a typo is one line."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if value == 0 and zero_ok:
            return value
        if not low <= value <= high:  # also false for nan
            lowest = "0 (off) or " + f"{low:g}" if zero_ok else f"{low:g}"
            raise argparse.ArgumentTypeError(
                f"must be from {lowest} to {high:g} seconds, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG, allow_abbrev=False,
        description="Dispatch a backlog of gaps to parallel AI coding agents and watch them "
                    "until their pull requests land.",
        epilog="Without --no-tui and with a terminal, the console opens; otherwise plain mode "
               "prints one line per event, in chump-orchestrator's format. See README.md for "
               "keys and files.",
    )
    p.add_argument("--backlog", type=Path, metavar="PATH",
                   help="gaps.yaml or a docs/gaps/ registry dir (default: docs/gaps/ when it "
                        "holds *.yaml files, else docs/gaps.yaml)")
    p.add_argument("--max-parallel", type=_whole(1, MAX_PARALLEL), default=2, metavar="N",
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
    p.add_argument("--include-shipped", action="store_true",
                   help="gaps whose branch already has a merged PR are pickable too (default: "
                        "not picked, 'shipped in #N')")
    p.add_argument("--fix-ci", dest="fix_ci", type=_whole(0, 20), default=0, metavar="N",
                   help="when an attempt's open PR fails its checks, resume its agent with the "
                        "failing checks and their logs, up to N times (default 0: wait, as "
                        "the reference does)")
    p.add_argument("--harness", default=None, metavar="NAME",
                   choices=("claude", "codex", "opencode", "gemini"),
                   help="the agent CLI: claude (default), codex, opencode or gemini "
                        "($CHUMP_HARNESS); a gap's harness: key picks its own")
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
    p.add_argument("--read-only", action="store_true",
                   help="the console only watches the repository's session (as a second "
                        "console does): nothing can be dispatched, killed, retried or removed")
    p.add_argument("--tick", dest="tick_s", type=_seconds(0.01, DAY_S, zero_ok=False),
                   default=DEFAULT_TICK_S,
                   metavar="SECONDS", help=f"GitHub poll interval (default {DEFAULT_TICK_S:g})")
    p.add_argument("--kill-grace", dest="kill_grace_s", type=_seconds(0.01, 3600),
                   default=DEFAULT_KILL_GRACE_S, metavar="SECONDS",
                   help=f"SIGTERM-to-SIGKILL grace (default {DEFAULT_KILL_GRACE_S:g})")
    p.add_argument("--soft-deadline", dest="soft_deadline_s",
                   type=_seconds(0.01, 7 * DAY_S, zero_ok=False), default=None,
                   metavar="SECONDS", help="soft deadline for every gap (overrides the "
                                           "effort table s=20m m=60m l=180m xl=360m)")
    p.add_argument("--first-output-timeout", dest="first_output_timeout_s",
                   type=_seconds(1, DAY_S), default=DEFAULT_FIRST_OUTPUT_TIMEOUT_S,
                   metavar="SECONDS", help="kill an agent that prints nothing at all for this "
                   f"long after it starts (default {DEFAULT_FIRST_OUTPUT_TIMEOUT_S:g}; 0: off)")
    p.add_argument("--idle-timeout", dest="idle_timeout_s", type=_seconds(1, DAY_S),
                   default=DEFAULT_IDLE_TIMEOUT_S, metavar="SECONDS",
                   help="kill an agent with no new output for this long, unless a process "
                        f"beneath it is busy (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0: off)")
    p.add_argument("--nats", nargs="?", const="", default=None, metavar="URL",
                   help="dispatch through chump-tui workers on other hosts via this NATS "
                        "server (no URL: $CHUMP_NATS_URL); see README 'Across machines'")
    p.add_argument("--nats-creds", type=Path, default=None, metavar="FILE",
                   help="this console's fleet identity for --nats: the nkey seed file "
                        "chump-tui fleet init wrote (or a .creds file)")
    p.add_argument("--trust-worker", action="append", default=[], metavar="KEY|FILE",
                   help="a worker key (U…) or trust file whose reports the console believes "
                        "(repeatable; also $CHUMP_FLEET_TRUST; none: each worker's first "
                        "key is pinned)")
    p.add_argument("--dispatch-deadline", dest="dispatch_deadline_s",
                   type=_seconds(1, 7 * DAY_S), default=DEFAULT_DISPATCH_DEADLINE_S,
                   metavar="SECONDS", help="with --nats: how long a dispatch may wait for a "
                   "host with a free slot and retry the broker's or a host's failures "
                   f"before it fails (default {DEFAULT_DISPATCH_DEADLINE_S:g}; 0: no limit)")
    p.add_argument("--fleet-output", choices=("full", "summary"), default="summary",
                   help="with --nats: what hosts send of their agents: what the console "
                        "shows (summary, the default: activity and new lines, coalesced; "
                        "the whole log of the agent you look at) or every byte (full)")
    p.add_argument("--insecure-broker", action="store_true",
                   help="use --nats even though the broker lets clients without "
                        "credentials in")
    n = p.add_argument_group("notifications and budgets")
    n.add_argument("--notify", nargs="?", const="all", default=None, type=_notify_events,
                   metavar="EVENTS", help="tell you (terminal bell and notification, "
                   "notify-send, --notify-url, --notify-cmd) when these happen: ended, quiet, "
                   "stalled, lost, budget, done, comma-separated (no value: all)")
    n.add_argument("--notify-url", default=None, type=_webhook_url, metavar="URL",
                   help="POST each notification as JSON to this http(s) URL (Slack-compatible "
                        "'text' field included)")
    n.add_argument("--notify-cmd", default=None, type=_command, metavar="CMD",
                   help="run CMD (split like a shell would, run without one) with each "
                        "notification as JSON on its stdin")
    n.add_argument("--budget-usd", type=_dollars, default=None, metavar="X",
                   help="per attempt (every run of it): told at 80%%, stopped at 100%% "
                        "(dollars as reported, else estimated from tokens)")
    n.add_argument("--budget-tokens", type=_whole(1, 10**12), default=None, metavar="N",
                   help="per attempt, tokens in + out, where no dollars are known")
    n.add_argument("--fleet-budget-usd", type=_dollars, default=None, metavar="Y",
                   help="the session's attempts together: past it nothing new is dispatched "
                        "and continuous mode pauses")
    n.add_argument("--budget-action", choices=("stop", "warn"), default="stop",
                   help="at an attempt's budget: stop it (default) or only tell you")
    p.add_argument("--config", type=Path, default=None, metavar="PATH",
                   help="settings file (default: $XDG_CONFIG_HOME/chump-tui/config.toml, "
                        "~/.config/chump-tui/config.toml); flags win over it")
    p.add_argument("--print-config", action="store_true",
                   help="print every setting, its value and where it came from, and exit")
    return p


def _notify_events(text: str) -> tuple[str, ...]:
    from chump_tui.notify import parse_events

    try:
        return parse_events(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _webhook_url(text: str) -> str:
    from chump_tui.notify import check_webhook_url

    try:
        return check_webhook_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _command(text: str) -> list[str]:
    import shlex

    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("an empty command")
    return argv


def _dollars(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dollars, got {text!r}") from None
    if not 0 < value <= 1_000_000:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1000000, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> Options:
    from chump_tui.config_file import apply_config_file, print_config

    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    sources = apply_config_file(parser, args)
    ns = parser.parse_args(args)
    if ns.print_config:
        print_config(parser, ns, sources, args)
        parser.exit(0)
    if ns.harness is None:
        ns.harness = os.environ.get("CHUMP_HARNESS", "").strip().lower() or "claude"
        if ns.harness not in ("claude", "codex", "opencode", "gemini"):
            parser.error(f"CHUMP_HARNESS={ns.harness!r}: choose claude, codex, opencode "
                         "or gemini")
    if ns.nats == "":
        ns.nats = os.environ.get("CHUMP_NATS_URL", "").strip()
        if not ns.nats:
            parser.error("--nats without a URL needs CHUMP_NATS_URL")
    if ns.read_only and (ns.no_tui or ns.self_test):
        parser.error("--read-only is the console's: plain mode and the self-test take no "
                     "session to watch")
    if ns.nats is None:
        for flag, value in (("--nats-creds", ns.nats_creds), ("--trust-worker", ns.trust_worker),
                            ("--insecure-broker", ns.insecure_broker)):
            if value:
                parser.error(f"{flag} needs --nats")
    return Options(**vars(ns))


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


def _follow_up(argv: list[str]) -> int:
    """``chump-tui follow-up [flags] GAP[#N] MESSAGE``: plain mode's follow-up, watched."""
    parser = build_parser()
    parser.prog = f"{PROG} follow-up"
    parser.usage = f"{PROG} follow-up [flags] GAP[#ATTEMPT] MESSAGE"
    parser.description = ("Resume an attempt's agent (the gap's latest attempt without "
                          "#ATTEMPT) with MESSAGE, in its worktree, as the attempt's next run; "
                          "then watch it until it has an outcome, as --execute --watch does. "
                          "In the console, f on the card does the same.")
    parser.add_argument("target", metavar="GAP[#ATTEMPT]")
    parser.add_argument("message", metavar="MESSAGE")
    from chump_tui.config_file import apply_config_file

    apply_config_file(parser, argv)
    ns = parser.parse_args(argv)
    target, message = ns.target, ns.message
    del ns.target, ns.message
    ns.dry_run, ns.watch, ns.no_tui = False, True, True
    if ns.harness is None:
        ns.harness = os.environ.get("CHUMP_HARNESS", "").strip().lower() or "claude"
    from chump_tui.plain import run_follow_up

    try:
        return run_follow_up(Options(**vars(ns)), target, message)
    except ChumpError as exc:
        from chump_tui.outside_text import visible

        print(visible(f"{PROG}: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["worker"]:
        from chump_tui.fleet.worker_cli import run_worker_cli

        return run_worker_cli(args[1:])
    if args[:1] == ["serve"]:
        from chump_tui.tui.serve import run_serve_cli

        return run_serve_cli(args[1:], parse_args)
    if args[:1] == ["follow-up"]:
        return _follow_up(args[1:])
    if args[:1] == ["fleet"]:
        from chump_tui.fleet.fleet_cli import run_fleet_cli

        return run_fleet_cli(args[1:])
    opts = parse_args(args)
    try:
        if opts.self_test:
            if opts.no_tui:
                from chump_tui.plain import run_self_test_plain

                return run_self_test_plain(opts)
            from chump_tui.tui.self_test_tui import run_self_test_tui

            return run_self_test_tui(opts)
        # Served to a browser (chump-tui serve), stdout is the web driver's pipe: the console.
        in_browser = os.environ.get("TEXTUAL_DRIVER", "").startswith("textual.drivers.web_driver")
        if not opts.demo and (opts.no_tui or not (sys.stdout.isatty() or in_browser)):
            from chump_tui.plain import run_plain

            return run_plain(opts)
        return start_console(opts)
    except ChumpError as exc:
        from chump_tui.outside_text import visible

        print(visible(f"{PROG}: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
