"""Plain mode for scripts and cron: the reference's output lines, no Textual.

Lines kept from ``chump-orchestrator``: the header with totals,
``WOULD DISPATCH:``, ``DISPATCHED:``, ``DISPATCH-FAILED:`` and the monitor
summary. Ctrl+C under ``--watch`` stops every agent group, records each as
Killed("interrupted"), prints the summary and exits 130.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chump_tui.backlog import Backlog, default_backlog_path, done_ids, load_backlog
from chump_tui.outside_text import visible
from chump_tui.paths import dispatch_paths
from chump_tui.picker import pickable_gaps
from chump_tui.repo import backlog_base, resolve_repo_root

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see chump_tui.backlog)

# The dry run needs only the loader and the picker; the engine and everything it
# pulls in (subprocess management, psutil, SQLite) is imported on the execute path.
if TYPE_CHECKING:
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.engine import Engine
    from chump_tui.events import EngineEvent
    from chump_tui.leftovers import Leftover
    from chump_tui.options import Options
    from chump_tui.pr_providers import PrProvider
    from chump_tui.session_store import SessionStore


AFTER_OUTCOME_WAIT_S = 15.0
"""How long the summary waits for agents still finishing after their PR merged."""

NOTHING_PICKABLE = ("note: no pickable gaps. Either backlog is exhausted or all open P0-P2 gaps "
                    "are XL or dependency-blocked.")


def _err(text: str) -> None:
    """One record, one line: outside text inside it can neither add lines nor escapes."""
    print(visible(text), file=sys.stderr, flush=True)


def _out(text: str) -> None:
    print(visible(text), flush=True)


def load_for(opts: Options, base: Path) -> Backlog:
    backlog = load_backlog(opts.backlog if opts.backlog is not None else default_backlog_path(base))
    for warning in backlog.warnings:
        _err(f"warning: {warning}")
    return backlog


def header_line(mode: str, backlog: Backlog, picked: int, max_parallel: int) -> str:
    gaps = backlog.gaps
    return (
        f"chump-orchestrator (MVP complete, {mode}): {len(gaps)} total gaps, "
        f"{sum(1 for g in gaps if g.status == 'open')} open, {len(done_ids(gaps))} done; "
        f"would dispatch {picked} of max-parallel {max_parallel}"
    )


def summary_lines(rows: list[Dispatch]) -> list[str]:
    from chump_tui.numbers import short_count
    from chump_tui.summary_export import (
        attempt_cost,
        cost_line,
        killed_note,
        runs_cell,
        runs_line,
        totals_line,
    )

    def outcome_line(r: Dispatch) -> str:
        assert r.outcome is not None
        if r.outcome.kind == "shipped":
            line = f"  SHIPPED   {r.branch}  PR #{r.outcome.pr_number}"
        elif r.outcome.kind == "stalled":
            line = f"  STALLED   {r.branch}  (no PR within soft deadline)"
        elif r.outcome.kind == "killed":
            line = f"  KILLED    {r.branch}  {r.outcome.reason}"
        else:
            line = f"  CI-FAILED {r.branch}  PR #{r.outcome.pr_number}"
        return line + (f"  on {r.host}" if r.host else "")

    def agent_line(r: Dispatch) -> str:
        errors = f"  {r.tool_errors} tool error(s)" if r.tool_errors else ""
        if r.run > 1:
            errors += f"  follow-ups / CI repairs {runs_cell(r)}"
        return (f"  {r.branch} #{r.attempt}  {r.harness or r.backend}  "
                f"{r.turns or 0} turns  in {short_count(r.tokens_in or 0)} "
                f"out {short_count(r.tokens_out or 0)}  {attempt_cost(r).text()}{errors}")

    ended = [r for r in rows if r.outcome is not None]
    lines = ["", f"=== monitor summary ({len(ended)} entries) ==="]
    lines += [_drawn(f"the summary row of {r.key}", outcome_line, r) for r in ended]
    lines.append(totals_line(rows))
    note = killed_note(rows)
    if note:  # ours, after the reference's line
        lines.append(f"({note})")
    costs = cost_line(rows)
    if costs:  # ours, after the reference's lines
        lines += ["", "=== agents ==="]
        lines += [_drawn(f"the agent row of {r.key}", agent_line, r) for r in rows
                  if r.turns is not None or r.cost_usd is not None]
        lines.append(costs)
    runs = runs_line(rows)
    if runs:
        lines.append(runs)
    return lines


def _drawn(what: str, draw: Callable[[Dispatch], str], row: Dispatch) -> str:
    """One row's line; a row that cannot be printed says so and the others follow."""
    try:
        return draw(row)
    except Exception as exc:
        from chump_tui.crash_log import draw_failure

        return f"  {draw_failure(what, exc)}"


def run_plain(opts: Options) -> int:
    base = backlog_base(opts.repo_root)
    backlog = load_for(opts, base)
    if not opts.dry_run:  # the header once the session and branches are known
        return _execute(opts, backlog)
    left = _leftovers(base, backlog, opts.include_shipped)
    blocked = {gid for gid, leftover in left.items() if leftover.reason(opts.include_shipped)}
    candidates = [g for g in backlog.gaps if g.id not in blocked]
    picked = pickable_gaps(candidates, opts.max_parallel, done_ids(backlog.gaps))
    _out(header_line("dry-run", backlog, len(picked), opts.max_parallel))
    if not picked:
        _err(NOTHING_PICKABLE)
        return 0
    root = base.resolve() if opts.repo_root is not None or base != Path(".") else Path(".")
    for gap in picked:
        wt, _branch = dispatch_paths(root, gap.id)
        _out(f"WOULD DISPATCH: {gap.id} (prio={gap.priority} effort={gap.effort}) in {wt}"
             f"  -- {gap.title}")
        if gap.id in left:
            _err(f"[dispatch] {gap.id} {left[gap.id].note()}")
    return 0


def _leftovers(base: Path, backlog: Backlog, include_shipped: bool) -> dict[str, Leftover]:
    """Branches earlier runs left (a git repository only: a dry run needs none). Blocked
    gaps are said on stderr; the reference's lines stay as they are."""
    root = base.resolve()
    if not (root / ".git").exists():
        return {}
    from chump_tui.leftovers import scan

    def github() -> PrProvider:
        from chump_tui.pr_providers import GhPrProvider

        return GhPrProvider(root)

    found, error = scan(root, backlog.gaps, github)
    if error:
        _err(f"[dispatch] could not ask GitHub about leftover branches: {error}")
    for gap_id, leftover in found.items():
        reason = leftover.reason(include_shipped)
        if reason:
            _err(f"[dispatch] {gap_id} not dispatched: {reason}")
    return found


def _execute(opts: Options, backlog: Backlog) -> int:
    from chump_tui.assembly import check_harnesses, open_session

    repo_root = resolve_repo_root(opts.repo_root)
    check_harnesses(opts, repo_root, backlog)
    store, records, notes = open_session(repo_root)
    try:
        return _execute_locked(opts, backlog, repo_root, store, records, notes)
    finally:
        store.release()


def _execute_locked(opts: Options, backlog: Backlog, repo_root: Path, store: SessionStore,
                    records: list[Dispatch], notes: list[str]) -> int:
    from chump_tui.assembly import follow_fleet

    engine, printer = _resumed_engine(opts, repo_root, backlog, store, records, notes)
    follow_fleet(engine, records)
    error = engine.scan_leftovers()
    if error:
        _err(f"[dispatch] could not ask GitHub about leftover branches: {error}")
    for gap_id, leftover in engine.leftovers.items():
        reason = leftover.reason(opts.include_shipped)
        _err(f"[dispatch] {gap_id} " + (f"not dispatched: {reason}" if reason
                                        else leftover.note()))
    for gap_id, holder in engine.held_elsewhere.items():
        _err(f"[dispatch] {gap_id} not dispatched: {holder}")
    slots = max(0, opts.max_parallel - engine.running_count())
    _out(header_line("execute+watch" if opts.watch else "execute", backlog,
                     len(engine.pickable_now(slots)), opts.max_parallel))

    def dispatch() -> int | None:
        slots = max(0, opts.max_parallel - engine.running_count())
        picked = engine.pickable_now(slots)
        if not picked and not engine.snapshot():
            _err(NOTHING_PICKABLE)
            return 0
        engine.dispatch(picked)
        if opts.watch:
            return None
        engine.wait_for_dispatches()  # a fleet's: each on a thread, answered or failed
        return _leave_running(engine, store, len(picked))

    return run_and_watch(opts, engine, store, printer, dispatch)


def run_and_watch(opts: Options, engine: Engine, store: SessionStore, printer: EventPrinter,
                  begin: Callable[[], int | None]) -> int:
    """``begin`` (dispatch, a follow-up: an exit code to stop there, or None), then watch
    until every agent has its outcome. Under --watch, Ctrl+C and SIGTERM stop every agent
    and record why; until the wait starts (agents being dispatched, the engine's threads
    starting) a signal is only noted: raising there could lose a row or leave the engine's
    threads running with nobody to stop them, and the process would never exit."""
    stop_requested: list[str] = []
    waiting = threading.Event()

    def on_stop_signal(signum: int, frame: object) -> None:
        why = "terminated" if signum == signal.SIGTERM else "interrupted"
        if not stop_requested:
            stop_requested.append(why)
        if waiting.is_set():
            raise Stopped(why)

    previous_term = signal.getsignal(signal.SIGTERM)
    previous_int = signal.getsignal(signal.SIGINT)
    if opts.watch:
        signal.signal(signal.SIGTERM, on_stop_signal)
        signal.signal(signal.SIGINT, on_stop_signal)
    try:
        code = begin()
        if code is not None:
            return code
        return _watch(opts, engine, store, printer, waiting, stop_requested)
    finally:
        waiting.clear()
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _leave_running(engine: Engine, store: SessionStore, dispatched: int) -> int:
    """Without --watch: say what runs on, and how to follow it."""
    engine.config.continuous = False
    engine.close()
    running = [d for d in engine.snapshot() if d.active and not d.waiting_for_pr]
    if running:
        _err(f"[chump-tui] {len(running)} agent(s) left running: "
             + ", ".join(f"{d.gap_id} pid {d.pid}" for d in running)
             + "; follow them with chump-tui (the console) or chump-tui --execute --watch "
               "in this repo (it re-attaches them), or their logs in "
               f"{store.log_dir}")
    failures = _spawn_failures(engine)
    if failures:
        _err(f"error: {failures} of {dispatched} dispatches failed")
        return 1
    return 0


def _watch(opts: Options, engine: Engine, store: SessionStore, printer: EventPrinter,
           waiting: threading.Event, stop_requested: list[str]) -> int:
    from chump_tui.session_store import needs_resume

    if opts.no_reflect:
        _err("[chump-tui] --no-reflect set: skipping reflection writes.")
    else:
        _err(f"[chump-tui] reflection writes will land in {engine.writer.describe()}")
    stopped_by: str | None = None
    engine.start()
    if opts.continuous:
        engine.set_continuous(True)
    try:
        waiting.set()
        if stop_requested:  # the signal came while the agents were being dispatched
            raise Stopped(stop_requested[0])
        engine.wait_until_idle()
    except Stopped as exc:
        stopped_by = exc.why
    waiting.clear()  # from here a signal is only noted: the ending below is bounded
    if stopped_by is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _err(f"[chump-tui] {stopped_by}: stopping every agent ...")
        engine.stop_all(stopped_by)
    engine.settle(AFTER_OUTCOME_WAIT_S)
    engine.close()
    printer.flush()
    from chump_tui.assembly import fleet_report

    dropped = fleet_report(engine)
    if dropped:
        _err(dropped)
    rows = engine.snapshot()
    failures = _spawn_failures(engine)
    for line in summary_lines(rows):
        _out(line)
    pending = engine.reflections.pending()
    if pending:
        _err(f"warning: {pending} reflection(s) not written: {engine.reflections.last_error()}")
    if stopped_by is not None:
        return 130 if stopped_by == "interrupted" else 143
    if failures:
        _err(f"error: {failures} of {len(rows)} dispatches failed at spawn time")
        return 1
    if not needs_resume(engine.snapshot()):
        store.archive()
    return 0


def run_follow_up(opts: Options, target: str, message: str) -> int:
    """``chump-tui follow-up``: resume attempt ``target`` (``GAP#N``, or ``GAP``: its latest)
    of this repository's last session with ``message``, then watch it to its outcome."""
    from chump_tui.errors import ChumpError
    from chump_tui.session_store import SessionBusy, SessionStore

    repo_root = resolve_repo_root(opts.repo_root)
    store = SessionStore.for_repo(repo_root)
    try:
        store.acquire()
    except SessionBusy as exc:
        raise ChumpError(f"{exc}: press f on the attempt's card in that console") from None
    try:
        store.bring_back_last()  # a session that finished: the follow-up goes on with it
        records, notes = store.load()
        row = _attempt(records, target)
        if row is None:
            raise ChumpError(f"{store.state_path}: no attempt {target} in this repository's "
                             "last session")
        try:
            backlog = load_for(opts, backlog_base(opts.repo_root))
        except ChumpError as exc:  # the attempt's row holds all a follow-up needs
            _err(f"warning: {exc}; following up without the backlog")
            backlog = Backlog(Path(""), [])
        engine, printer = _resumed_engine(opts, repo_root, backlog, store, records, notes)

        def begin() -> int | None:
            error = engine.follow_up(row.key, message)
            if error is None:
                return None
            _err(f"error: {row.key}: no follow-up: {error}")
            engine.close()
            return 1

        return run_and_watch(opts, engine, store, printer, begin)
    finally:
        store.release()


def _attempt(records: list[Dispatch], target: str) -> Dispatch | None:
    if "#" in target:
        return next((r for r in records if r.key == target), None)
    attempts = [r for r in records if r.gap_id == target]
    return max(attempts, key=lambda r: r.attempt) if attempts else None


class Stopped(Exception):
    """Ctrl+C or SIGTERM under --watch: stop every agent and record ``why``."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _resumed_engine(opts: Options, repo_root: Path, backlog: Backlog, store: SessionStore,
                    records: list[Dispatch], notes: list[str]) -> tuple[Engine, EventPrinter]:
    """The engine over the session, its events printed, notifications on, the session's
    rows taken over (each decision said)."""
    from chump_tui.assembly import build_engine

    engine = build_engine(opts, repo_root, backlog, store, warn=_err)
    printer = EventPrinter()
    engine.subscribe(printer)
    _notify(opts, engine)
    for note in notes + engine.resume(records):
        _err(f"[chump-tui] {note}")
    return engine, printer


def _notify(opts: Options, engine: Engine) -> None:
    """Notifications (--notify): in plain mode the terminal's are written to stderr when it
    is a terminal."""
    from chump_tui.assembly import notify_settings, start_notifier

    settings = notify_settings(opts)
    if settings is None:
        return

    def to_terminal(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    start_notifier(settings, engine, to_terminal if sys.stderr.isatty() else None)


def _spawn_failures(engine: Engine) -> int:
    return sum(1 for r in engine.snapshot() if r.failed_to_start)


class EventPrinter:
    """Plain mode's lines for engine events. A GitHub error that repeats every tick is
    printed once, then once more with a count when it changes or clears."""

    def __init__(self) -> None:
        self.gh_error: str | None = None
        self.gh_repeats = 0
        self.waiting: dict[str, str] = {}  # row key -> what it was last said to wait for

    def __call__(self, event: EngineEvent) -> None:
        from chump_tui.events import Attention, DispatchChanged, GitHubPolled, Notice

        if isinstance(event, Attention):
            _err(f"[{event.kind}] {event.text}")
        elif isinstance(event, DispatchChanged):
            self.dispatch_changed(event.dispatch, event.why)
        elif isinstance(event, GitHubPolled):
            self.github(event.error if not event.ok else None)
        elif isinstance(event, Notice):
            _err(f"[chump-tui] {event.text}")

    def dispatch_changed(self, d: Dispatch, why: str) -> None:
        try:
            self._dispatch_changed(d, why)
        except Exception as exc:  # one row's line never stops the others
            from chump_tui.crash_log import draw_failure

            _err(f"[chump-tui] {draw_failure(f'the line for {d.key} ({why})', exc)}")

    def _dispatch_changed(self, d: Dispatch, why: str) -> None:
        if why == "dispatched":
            pid = d.pid if d.pid is not None else "<no-pid>"
            on_host = f" on {d.host}" if d.host else ""  # a fleet agent: the host runs it
            _out(f"DISPATCHED: {d.gap_id} in {d.worktree} as PID {pid}{on_host}")
            if d.note:
                _err(f"[dispatch] {d.branch}: {d.note}")
        elif why == "spawn_failed" and d.taken_by:
            _err(f"[dispatch] {d.gap_id} not dispatched: {d.taken_by}")
        elif why == "spawn_failed":
            _err(f"DISPATCH-FAILED: {d.gap_id}: {d.error}")
        elif why == "waiting":
            # Said once per kind of wait, not at every count or back-off step.
            kind = "".join(c for c in d.waiting.split(":")[0] if not c.isdigit())
            if d.waiting and self.waiting.get(d.key) != kind:
                _err(f"[dispatch] {d.gap_id} queued: {d.waiting}")
            self.waiting[d.key] = kind
        elif why == "stalled":
            _err(f"[monitor] {d.branch}: no PR after the soft deadline "
                 f"({int(d.soft_deadline_s)}s); still watching")
        elif why == "killing":
            _err(f"[monitor] {d.branch}: killing ({d.kill_reason})")
        elif why == "exited":
            start = d.run_started_at or d.started_at  # a later run has deadlines of its own
            until = time.strftime("%H:%M:%S", time.localtime(start + d.soft_deadline_s))
            _err(f"[monitor] {d.gap_id} exited 0, no PR yet; waiting until {until}")
        elif why == "outcome":
            _err(f"[monitor] {d.branch}: {d.label()} {d.reason()}".rstrip())
        elif why == "next run started":
            _out(f"RESUMED: {d.key} ({d.run_note}) in {d.worktree} as PID {d.pid}")

    def github(self, error: str | None) -> None:
        if error is not None and error == self.gh_error:
            self.gh_repeats += 1
            return
        if self.gh_repeats:
            _err(f"[monitor] gh pr list failed {self.gh_repeats} more time(s) the same way")
        if error is None and self.gh_error is not None:
            _err("[monitor] GitHub answers again")
        elif error is not None:
            _err(f"[monitor] gh pr list failed: {error} (will retry every tick)")
        self.gh_error, self.gh_repeats = error, 0

    def flush(self) -> None:
        if self.gh_repeats:
            _err(f"[monitor] gh pr list failed {self.gh_repeats} more time(s) the same way")
            self.gh_repeats = 0


def run_self_test_plain(opts: Options) -> int:
    from chump_tui.self_test import run_self_test, scratch_dir

    _err(f"[chump-tui] --self-test: packaged synthetic backlog, scratch={scratch_dir()}")
    report = run_self_test(opts.max_parallel)
    passed = report.passed()  # before clean-up: it checks the dummy files exist
    _out(report.verdict_line())
    for line in report.row_lines():
        _out(line)
    for error in report.errors:
        _err(f"self-test: {error}")
    shutil.rmtree(scratch_dir(), ignore_errors=True)
    return 0 if passed else 1
