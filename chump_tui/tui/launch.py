"""Builds the console from command-line options: a real repo, or the bundled demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from chump_tui.assembly import (
    build_engine,
    check_harnesses,
    follow_fleet,
    make_writer,
    notify_settings,
    open_session,
)
from chump_tui.backlog import Backlog, default_backlog_path, load_backlog
from chump_tui.outside_text import visible
from chump_tui.repo import backlog_base, git_toplevel, resolve_repo_root
from chump_tui.tui.app import ChumpApp, ConsoleSetup

if TYPE_CHECKING:
    from collections.abc import Callable

    from chump_tui.dispatch_record import Dispatch
    from chump_tui.options import Options
    from chump_tui.preload import BacklogPreload
    from chump_tui.session_store import SessionBusy


def demo_setup(opts: Options) -> ConsoleSetup:
    from chump_tui.demo import (
        DEMO_IDLE_TIMEOUT_S,
        DEMO_KILL_GRACE_S,
        DEMO_SOFT_DEADLINE_S,
        DEMO_TICK_S,
        DemoSpawner,
        SimulatedGitHub,
        demo_backlog,
        make_demo_root,
    )
    from chump_tui.engine import Engine, EngineConfig, default_log_dir

    root = make_demo_root()
    backlog = demo_backlog()
    state = root / "github-state.txt"
    writer = make_writer(opts, root)
    engine = Engine(
        root, DemoSpawner(root, backlog.gaps, state), SimulatedGitHub(state), writer,
        EngineConfig(max_parallel=opts.max_parallel if opts.max_parallel != 2 else 4,
                     tick_s=DEMO_TICK_S, kill_grace_s=DEMO_KILL_GRACE_S,
                     soft_deadline_s=opts.soft_deadline_s or DEMO_SOFT_DEADLINE_S,
                     idle_timeout_s=DEMO_IDLE_TIMEOUT_S, log_dir=default_log_dir(root),
                     fix_ci=opts.fix_ci, budget_usd=opts.budget_usd,
                     budget_tokens=opts.budget_tokens, fleet_budget_usd=opts.fleet_budget_usd,
                     budget_action=opts.budget_action),
        backlog=backlog.gaps,
    )
    return ConsoleSetup(lambda: engine, backlog, root, dry_run=False,
                        mode_label="DEMO, READ-ONLY" if opts.read_only else "DEMO",
                        watch_only=opts.read_only,
                        max_parallel=engine.config.max_parallel,
                        # Exports outlive the throwaway repository: where the demo ran.
                        reflections_target=writer.describe(), export_dir=Path.cwd(),
                        banner="Demo: simulated agents and GitHub in a throwaway repository "
                               "(removed when you quit). Press a then d to dispatch, ? for keys.",
                        demo_root=root, notify=notify_settings(opts))


def repo_setup(opts: Options, preload: BacklogPreload | None = None) -> ConsoleSetup:
    base = backlog_base(opts.repo_root)
    path = opts.backlog if opts.backlog is not None else default_backlog_path(base)
    backlog = preload.result() if preload is not None else load_backlog(path)
    notes = [backlog_warning_note(backlog.warnings)] if backlog.warnings else []
    if opts.dry_run:
        repo_root = opts.repo_root.resolve() if opts.repo_root else (git_toplevel()
                                                                     or Path(".").resolve())
        # Built after the first frame (see ConsoleSetup): nothing here needs it sooner. With
        # --nats it is built now, so a server that is not there is one line before the screen.
        fleet_notes: list[str] = []
        early = (build_engine(opts, repo_root, backlog, store=None, warn=fleet_notes.append)
                 if opts.nats else None)
        notes = fleet_notes + notes
        return ConsoleSetup(lambda: early or build_engine(opts, repo_root, backlog, store=None),
                            backlog, repo_root, dry_run=True, mode_label="DRY-RUN",
                            max_parallel=opts.max_parallel, reflections_target=None,
                            export_dir=repo_root / "sessions",
                            banner="\n".join(notes[:2]), extra_notes=notes)
    from chump_tui.session_store import SessionBusy

    repo_root = resolve_repo_root(opts.repo_root)
    if opts.read_only:  # never takes the session: only looks at whoever holds it
        return watch_setup(opts, repo_root, backlog, "READ-ONLY",
                           "Read-only (--read-only): nothing here changes any agent.")
    check_harnesses(opts, repo_root, backlog)
    try:
        store, records, session_notes = open_session(repo_root)
    except SessionBusy as busy:
        return read_only_setup(opts, repo_root, backlog, busy)
    fleet_notes = []  # the console's key; a broker that admits anyone
    engine = build_engine(opts, repo_root, backlog, store, warn=fleet_notes.append)
    resumed = engine.resume(records)
    follow_fleet(engine, records)
    notes += session_notes + resumed
    banner = (f"resumed the session: {len(records)} dispatch(es)"
              + (f"; {resumed[0]}" if resumed and resumed[0].startswith("re-attached") else "")
              if records else (notes[0] if notes else ""))
    banner = "\n".join([*fleet_notes, banner]).strip()
    notes = fleet_notes + notes
    return ConsoleSetup(lambda: engine, backlog, repo_root, dry_run=False, mode_label="EXECUTE",
                        max_parallel=opts.max_parallel,
                        reflections_target=engine.writer.describe(),
                        export_dir=repo_root / "sessions", banner=banner, extra_notes=notes,
                        store=store, start_on_monitor=engine.active_count() > 0,
                        notify=notify_settings(opts))


def backlog_warning_note(warnings: list[str]) -> str:
    more = f" (and {len(warnings) - 1} more: w on the backlog lists them)" \
        if len(warnings) > 1 else ""
    return f"backlog warning: {warnings[0]}{more}"


def read_only_setup(opts: Options, repo_root: Path, backlog: Backlog,
                    busy: SessionBusy) -> ConsoleSetup:
    """A view of another console's session: it reloads the state file and changes nothing."""
    if sys.stdin.isatty():
        print(visible(f"chump-tui: {busy}"), file=sys.stderr)
        try:
            answer = input("Open a read-only view of it? [Y/n] ").strip().lower()
        except EOFError:
            answer = "n"
        if answer not in ("", "y", "yes"):
            raise busy
    return watch_setup(opts, repo_root, backlog, f"READ-ONLY (pid {busy.pid})",
                       f"Read-only: {busy}. Nothing here changes its agents.")


def watch_setup(opts: Options, repo_root: Path, backlog: Backlog, label: str,
                banner: str) -> ConsoleSetup:
    """A view of the repository's session as its state file says: reloaded, never changed."""
    from chump_tui.session_store import SessionStore

    engine = build_engine(opts, repo_root, backlog, store=None)
    return ConsoleSetup(lambda: engine, backlog, repo_root, dry_run=False,
                        mode_label=label, max_parallel=opts.max_parallel,
                        reflections_target=engine.writer.describe(),
                        export_dir=repo_root / "sessions", banner=banner, start_engine=False,
                        watch_state=SessionStore(repo_root / "sessions" / "chump-tui", repo_root))


def _offer_demo(base: Path) -> bool:
    print(visible(f"chump-tui: no backlog found (looked for {base}/docs/gaps/*.yaml and "
                  f"{base}/docs/gaps.yaml)."), file=sys.stderr)
    print("  Point at one with --backlog PATH (a gaps.yaml or a docs/gaps/ directory),",
          file=sys.stderr)
    print("  or see everything on simulated agents with: chump-tui --demo", file=sys.stderr)
    if not sys.stdin.isatty():
        return False
    try:
        answer = input("Open the demo now? [Y/n] ").strip().lower()
    except EOFError:
        return False
    return answer in ("", "y", "yes")


def close_setup(setup: ConsoleSetup) -> None:
    """What every way out of the console does: the engine's threads end (queued reflection
    writes flushed), the session lock is released, the demo's temp repository removed."""
    if setup.engine_built:
        if setup.demo_root is not None:  # simulations: nothing of the demo outlives it
            setup.engine.stop_all("demo ended", grace_s=1.0)
        setup.engine.close()
    if setup.store is not None:
        setup.store.release()
    if setup.demo_root is not None:
        from chump_tui.demo import remove_demo_root

        remove_demo_root(setup.demo_root)


def still_running(setup: ConsoleSetup) -> list[Dispatch]:
    """Attempts whose agent process still runs (not those that exited and wait for a PR):
    what the quit dialog counted."""
    return [d for d in setup.engine.snapshot() if d.active and not d.waiting_for_pr]


def run_console(opts: Options, preload: BacklogPreload | None = None,
                run_app: Callable[[ChumpApp], object] | None = None) -> int:
    if opts.demo:
        setup = demo_setup(opts)
    else:
        base = backlog_base(opts.repo_root)
        if opts.backlog is None and not default_backlog_path(base).exists():
            if not _offer_demo(base):
                return 2
            setup = demo_setup(opts)
        else:
            setup = repo_setup(opts, preload)
    app = ChumpApp(setup)
    try:
        code = app.run() if run_app is None else run_app(app)
    finally:
        close_setup(setup)
    if app.crash_line is not None:
        print(app.crash_line, file=sys.stderr)
        return 1
    if app.closed_by is not None:
        left = still_running(setup) if setup.engine_built else []
        kept = (f"; {len(left)} agent(s) keep running and the next start in this repo "
                "re-attaches them" if left and setup.store is not None else "")
        print(f"chump-tui: closed by {app.closed_by.name}{kept}", file=sys.stderr)
        return 128 + app.closed_by.value
    if app.quit_choice == "leave":
        left = still_running(setup)
        waiting = sum(1 for d in setup.engine.snapshot() if d.waiting_for_pr)
        print(visible(f"chump-tui: left {len(left)} agent(s) running: "
                      + ", ".join(f"{d.gap_id} pid {d.pid}" for d in left)
                      + (f"; {waiting} exited and wait for a PR (the next start watches "
                         "them)" if waiting else "")))
    if isinstance(code, int):
        return code
    return app.return_code or 0

