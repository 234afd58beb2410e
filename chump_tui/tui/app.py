"""The console app: three modes (backlog, monitor, summary) over one engine.

The engine runs on its own threads; the bridge posts its events here as
messages. The app keeps the latest copy of every dispatch row and redraws
the visible screen from a timer at a bounded rate, so a flood of agent
output never floods the UI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textual import work
from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.notifications import Notify, SeverityLevel
from textual.screen import ModalScreen, Screen

from chump_tui.backlog import Backlog, Gap, done_ids
from chump_tui.gc_pause import for_a_live_screen, startup_done
from chump_tui.outside_text import visible, visible_block
from chump_tui.picker import pick_reason
from chump_tui.tui.messages import DispatchUpdated, EngineNotice, GitHubStatus
from chump_tui.tui.screens.backlog import BacklogScreen
from chump_tui.tui.widgets.status_line import StatusTally

if TYPE_CHECKING:
    from chump_tui.dispatch_record import Dispatch
    from chump_tui.engine import Engine
    from chump_tui.leftovers import Leftover
    from chump_tui.notify import Notifier, NotifySettings
    from chump_tui.session_store import SessionStore
    from chump_tui.tui.bridge import EngineBridge
    from chump_tui.tui.screens.quit_dialog import QuitChoice

REDRAW_HZ = 10
MAX_TOASTS = 3


# The start screen is imported eagerly; the others when first shown, which keeps
# their imports out of the time to the first frame.
def _monitor_screen() -> Screen[None]:
    from chump_tui.tui.screens.monitor import MonitorScreen

    return MonitorScreen()


def _summary_screen() -> Screen[None]:
    from chump_tui.tui.screens.summary import SummaryScreen

    return SummaryScreen()


@dataclass
class ConsoleSetup:
    """Everything the console needs, built by ``launch`` (or a test factory).

    The engine is built by ``make_engine`` on first use. A dry run's is first used just
    after the first frame, which keeps importing the engine (about 30 ms) out of the
    start-up; with --execute, resuming the session needs it before the console opens.
    """

    make_engine: Callable[[], Engine]
    backlog: Backlog
    repo_root: Path
    dry_run: bool
    mode_label: str  # DRY-RUN | EXECUTE | DEMO | SELF-TEST
    max_parallel: int
    reflections_target: str | None  # None: ask the engine's writer
    export_dir: Path
    clock: Callable[[], float] = time.time
    banner: str = ""
    start_engine: bool = True
    extra_notes: list[str] = field(default_factory=list)
    store: SessionStore | None = None  # the session this console holds (and releases)
    watch_state: SessionStore | None = None  # read-only view: another console's session
    demo_root: Path | None = None  # --demo: its throwaway repository, removed at exit
    start_on_monitor: bool = False  # it resumed agents still running: show them first
    notify: NotifySettings | None = None  # --notify: what to tell the operator, and where
    watch_only: bool = False  # --read-only: look, never touch (a shared browser link)
    _engine: Engine | None = field(default=None, init=False, repr=False)
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def read_only(self) -> bool:
        return self.watch_state is not None or self.watch_only

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = self.make_engine()
            return self._engine

    @property
    def engine_built(self) -> bool:
        return self._engine is not None

    def reflections_where(self) -> str:
        return self.reflections_target or self.engine.writer.describe()


class ChumpApp(App[int]):
    CSS_PATH = "chump.tcss"
    TITLE = "chump-tui"
    # The backlog mode's first screen comes from get_default_screen(): a mode listed in
    # MODES makes Textual re-parse every stylesheet before the first frame (about 25 ms
    # at start-up). It joins the modes in on_mount, so switch_mode('backlog') works.
    MODES = {"monitor": _monitor_screen, "summary": _summary_screen}
    # Screens get one of these classes by width: chump.tcss lays out 80 columns apart.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-normal"), (160, "-wide")]
    # Under 32 rows the cards show their first lines only and the output pane keeps three:
    # at 80x24 two cards fit.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    DEFAULT_MODE = "backlog"
    BINDINGS = [  # in footer order, after the screen's own (q and ? lead those)
        Binding("q", "request_quit", "Quit", show=False),
        Binding("question_mark", "help", "Help", show=False),
        Binding("b", "switch_mode('backlog')", "Backlog"),
        Binding("m", "switch_mode('monitor')", "Monitor"),
        Binding("s", "switch_mode('summary')", "Summary"),
        Binding("ctrl+c", "request_quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, setup: ConsoleSetup, redraw_hz: float = REDRAW_HZ) -> None:
        super().__init__()
        self.setup = setup
        self.bridge: EngineBridge | None = None  # set when the engine is connected
        self.redraw_hz = redraw_hz
        self.dispatches: dict[str, Dispatch] = {}
        self.tally = StatusTally()  # the status line's counts over self.dispatches
        self.latest_by_gap: dict[str, Dispatch] = {}
        self.version = 0
        self.github_error: str | None = None
        self.notifier: Notifier | None = None
        self.quit_choice: QuitChoice | None = None
        self.crash_line: str | None = None
        self.closed_by: signal.Signals | None = None
        self.stopping = False
        self._all_ended_told = False
        self.done_before = done_ids(setup.backlog.gaps)
        self.leftovers: dict[str, Leftover] = {}  # filled by a scan after the first frame
        self.held_elsewhere: dict[str, str] = {}  # gap id -> its claim in the fleet's bucket
        self.by_id = setup.backlog.by_id()

    # ----------------------------------------------------------------- set-up
    def get_default_screen(self) -> Screen[None]:
        return BacklogScreen()

    def on_mount(self) -> None:
        self._watch_signals()
        self.add_mode("backlog", BacklogScreen)
        # The backlog and Textual are long-lived: frozen after the first frame, the cyclic
        # GC never re-walks them (tens of thousands of objects) in the middle of a keystroke.
        self.call_after_refresh(self._after_first_frame)
        self.title = f"chump-tui — {visible(self.setup.mode_label)}"
        self.sub_title = visible(self.setup.repo_root)
        if self.setup.engine_built:  # resumed dispatches belong in the first frame
            self._connect_engine()
        self.set_interval(1 / self.redraw_hz, self._redraw)
        if self.setup.watch_state is not None:
            self.set_interval(1.0, self._reload_watched_state)
        if self.setup.banner:
            self.notify(self.setup.banner, timeout=10)

    def _watch_signals(self) -> None:
        """SIGTERM and SIGHUP (the terminal or ssh session went away) close the console
        cleanly: the session is on disk, agents keep running, the next start re-attaches."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._closed_by_signal, sig)

    def _closed_by_signal(self, sig: signal.Signals) -> None:
        self.closed_by = sig
        if sig == signal.SIGHUP:
            # The terminal is gone: restoring it would block forever in Textual's writer
            # thread (seen under tmux). The session is on disk already; finish what must
            # not be lost (queued reflection writes, the demo's temp repo) and leave.
            from chump_tui.tui.launch import close_setup

            close_setup(self.setup)
            os._exit(128 + sig.value)
        self.exit(128 + sig.value)

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def _after_first_frame(self) -> None:
        self._connect_engine()
        startup_done()
        for_a_live_screen()
        if self.setup.start_on_monitor:
            self.switch_mode("monitor")

    @property
    def engine(self) -> Engine:
        """The engine; the first use on the UI thread connects it (see _connect_engine)."""
        self._connect_engine()
        return self.setup.engine

    def _connect_engine(self) -> None:
        """Once: build the engine if needed, mirror its rows, subscribe, start its threads.

        Runs on the UI thread: in on_mount when the engine already exists, else just after
        the first frame, or earlier if a key needs the engine first. Thread workers get
        the engine only after that (they start from screens drawn after the first frame).
        """
        if self.bridge is not None:
            return
        from chump_tui.tui.bridge import EngineBridge

        engine = self.setup.engine
        for record in engine.snapshot():
            self._store(record)
        self.bridge = EngineBridge(self)
        engine.subscribe(self.bridge)
        if self.setup.notify is not None and not self.setup.read_only:
            from chump_tui.assembly import start_notifier

            self.notifier = start_notifier(self.setup.notify, engine, self.signal_terminal)
        if self.setup.start_engine:
            engine.start()
        if not self.setup.read_only:
            self._scan_leftovers(engine)

    @work(thread=True, group="leftovers", exit_on_error=False)
    def _scan_leftovers(self, engine: Engine) -> None:
        """Branches earlier runs left (git, and one gh call when there are any)."""
        error = engine.scan_leftovers()
        self.call_from_thread(self._got_leftovers, dict(engine.leftovers), error,
                              dict(engine.held_elsewhere))

    def _got_leftovers(self, found: dict[str, Leftover], error: str | None,
                       held: dict[str, str] | None = None) -> None:
        self.leftovers = found
        self.held_elsewhere = held or {}
        self.version += 1  # the backlog redraws its reasons
        if error:
            self.notify(f"could not ask GitHub about leftover branches: {error}",
                        severity="warning", timeout=10)

    def _redraw(self) -> None:
        # Shutting down (is_running goes false first): switching modes now would add a
        # screen stack while Textual is closing them all.
        if not self.is_running or self._closing or self._closed:
            return
        try:
            stack = list(self.screen_stack)
        except ScreenStackError:  # the timer can outlive the screens during shutdown
            return
        dirty = self.bridge.take_dirty_output() if self.bridge is not None else set()
        # The top screen that draws engine state: under a dialog (a kill confirmation, the
        # patch view) the monitor stays live, as the operator sees it through the dialog.
        # A screen just switched to may not have composed yet; it draws itself on mount.
        screen = next((s for s in reversed(stack) if hasattr(s, "refresh_view")), None)
        if screen is not None and getattr(screen, "ready", False):
            try:
                screen.refresh_view(dirty)
            except NoMatches:  # its widgets are being torn down (mode switch or shutdown)
                return

    @work(thread=True, group="watch", exclusive=True, exit_on_error=False)
    def _reload_watched_state(self) -> None:
        """Read-only view: mirror the other console's state file into our passive engine."""
        assert self.setup.watch_state is not None
        records, _warnings = self.setup.watch_state.load(read_only=True)
        for record in records:
            if self.dispatches.get(record.key) != record:
                self.engine.restore(record)

    def writable(self) -> bool:
        """False (with a notice) in a read-only view or while quitting."""
        if self.setup.read_only:
            self.notify(f"{self.setup.mode_label}: this console only watches.",
                        severity="warning")
            return False
        return not self.stopping

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every toast is plain text: most quote a gap id, a path or an error from outside."""
        super().notify(visible_block(message), title=visible(title), severity=severity,
                       timeout=timeout, markup=False)

    def push_screen(self, screen: object, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        """A dialog opens over no information notice (warnings and errors stay)."""
        if isinstance(screen, ModalScreen):
            for notice in list(self._notifications):
                if notice.severity == "information":
                    self._unnotify(notice, refresh=False)
            self._refresh_notifications()
        return super().push_screen(screen, *args, **kwargs)  # type: ignore[call-overload]

    def _on_notify(self, event: Notify) -> None:
        """At most MAX_TOASTS notices at once (the oldest goes): in continuous mode outcomes
        come in bursts, and a stack of them covered the output pane and the status line.
        Over a dialog, only warnings and errors are shown (the monitor says the rest)."""
        try:
            over_a_dialog = isinstance(self.screen, ModalScreen)
        except ScreenStackError:  # closing: nothing to show it on
            return
        if over_a_dialog and event.notification.severity == "information":
            return
        super()._on_notify(event)
        shown = list(self._notifications)
        for old in shown[:max(0, len(shown) - MAX_TOASTS)]:
            self._unnotify(old, refresh=False)
        self._refresh_notifications()

    def _handle_exception(self, error: Exception) -> None:
        """A crash: one line on exit instead of Textual's traceback (which quotes outside
        text and local variables), the traceback in a private file, a non-zero exit code.

        Textual offers no public hook for this; the override keeps Textual's handling
        (exit code 1, the exception re-raised under Pilot) and drops only its printout.
        """
        from chump_tui.crash_log import write_traceback

        where = write_traceback(error, "the console")
        agents = ""
        if self.setup.engine_built and self.setup.store is not None:
            active = self.setup.engine.active_count()
            if active:
                agents = (f"; {active} agent(s) keep running and the next start in this repo "
                          "re-attaches them")
        self.crash_line = visible(f"chump-tui: crashed ({type(error).__name__}: {error})"
                                  f"{agents}; {where}")
        super()._handle_exception(error)
        self._exit_renderables.clear()  # the launcher prints crash_line instead

    # ------------------------------------------------------------ engine news
    def on_dispatch_updated(self, message: DispatchUpdated) -> None:
        record = message.dispatch
        self._store(record)
        if message.why == "outcome" and record.outcome is not None:
            severity: Literal["information", "warning"] = (
                "information" if record.outcome.kind == "shipped" else "warning")
            self.notify(f"{record.gap_id} #{record.attempt}: {record.label()} {record.reason()}",
                        title=record.label(), severity=severity, timeout=6)
        elif message.why == "spawn_failed" and record.taken_by:
            self.notify(f"{record.gap_id}: {record.taken_by}", title="TAKEN", timeout=8)
        elif message.why == "spawn_failed":
            self.notify(f"{record.gap_id}: {record.error}", title="SPAWN-FAILED",
                        severity="error", timeout=8)
        if message.why in ("dispatching", "dispatched"):
            self._all_ended_told = False
        elif message.why in ("outcome", "spawn_failed") and not self._all_ended_told \
                and not self.stopping and self.all_ended():
            # A notice, never a jump: the operator may be reading a card or typing.
            self._all_ended_told = True
            self.notify("All agents ended: s for the summary.", title="All ended", timeout=15)

    def _store(self, record: Dispatch) -> None:
        self.dispatches[record.key] = record
        self.tally.update(record)
        latest = self.latest_by_gap.get(record.gap_id)
        if latest is None or latest.attempt <= record.attempt:
            self.latest_by_gap[record.gap_id] = record
        self.version += 1

    def on_git_hub_status(self, message: GitHubStatus) -> None:
        self.github_error = None if message.ok else message.error

    def on_engine_notice(self, message: EngineNotice) -> None:
        severity = {"error": "error", "warning": "warning"}.get(message.level, "information")
        self.notify(message.text, severity=severity, timeout=6)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- queries
    def all_ended(self) -> bool:
        """Every dispatch ended and (in continuous mode) nothing left to refill with."""
        if not self.dispatches or self.tally.active():
            return False
        return not (self.engine.config.continuous and self.engine.pickable_now(1))

    def signal_terminal(self, text: str) -> None:
        """Write a notification's bell and escape (built by chump_tui.notify from our own
        words) to the terminal; called from the notifier's thread."""
        def write() -> None:
            driver = self._driver  # Textual's own bell() writes through it too
            if driver is not None:
                driver.write(text)

        with contextlib.suppress(RuntimeError):  # the console is closing: nothing to ring
            self.call_from_thread(write)

    def continuous_on(self) -> bool:
        """Continuous mode as the session's owner has it (a read-only view shows the owner's)."""
        if self.setup.watch_state is not None:
            return self.setup.watch_state.meta.get("continuous", False)
        return self.engine.config.continuous

    def fleet_hosts(self) -> list[tuple[str, int, int]] | None:
        """The fleet's hosts that are up (name, free slots, slots); None without --nats."""
        return self.engine.hosts()

    def done_now(self) -> set[str]:
        shipped = {d.gap_id for d in self.dispatches.values()
                   if d.outcome is not None and d.outcome.kind == "shipped"}
        return self.done_before | shipped

    def gap_reason(self, gap: Gap, done: set[str]) -> str | None:
        latest = self.latest_by_gap.get(gap.id)
        if latest is not None:
            return f"dispatched: {latest.label()}"
        leftover = self.leftovers.get(gap.id)
        reason = leftover.reason(self.engine.config.include_shipped) if leftover else None
        if reason:
            return reason
        if gap.id in self.held_elsewhere:
            return self.held_elsewhere[gap.id]
        return pick_reason(gap, done, self.by_id, self.setup.backlog.unusable)

    # ---------------------------------------------------------------- actions
    def action_help(self) -> None:
        from chump_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_request_quit(self) -> None:
        if self.stopping:
            return
        from chump_tui.tui.screens.quit_dialog import QuitDialog

        if isinstance(self.screen, QuitDialog):
            return
        running = self.engine.running_count()
        if running == 0 or self.setup.read_only:
            self.exit(0)
            return

        def chosen(choice: QuitChoice | None) -> None:
            if choice is not None:
                self.quit_with(choice)

        self.push_screen(QuitDialog(running, self.engine.config.kill_grace_s,
                                    demo=self.setup.demo_root is not None), chosen)

    def action_quit(self) -> None:  # type: ignore[override]
        """Every way out (ctrl+q, the palette's Quit) asks as q does when agents run."""
        self.action_request_quit()

    def quit_with(self, choice: QuitChoice) -> None:
        self.quit_choice = choice
        if choice == "leave":
            self.exit(0)
            return
        self.stopping = True
        self.notify(f"stopping {self.engine.running_count()} agent(s); "
                    f"SIGKILL after {self.engine.config.kill_grace_s:g}s grace …",
                    title="Quitting", timeout=30)
        self._stop_then_exit(choice == "stop_remove")

    @work(thread=True, group="quit", exit_on_error=False)
    def _stop_then_exit(self, remove_worktrees: bool) -> None:
        self.engine.stop_all("stopped by operator at quit", remove_worktrees=remove_worktrees)
        self.engine.reflections.flush(10)
        self.call_from_thread(self.exit, 0)

    def dispatch_gaps(self, gaps: list[Gap]) -> None:
        # self.engine connects the engine here, on the UI thread, never on the worker.
        self._dispatch_on_a_worker(self.engine, gaps)

    @work(thread=True, group="dispatch", exit_on_error=False)
    def _dispatch_on_a_worker(self, engine: Engine, gaps: list[Gap]) -> None:
        engine.dispatch(gaps, queue=True)  # beyond max-parallel: started as slots free

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette offers every key binding of the app and the current screen."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for source in (screen, self):
            for binding in getattr(source, "BINDINGS", []):
                if not isinstance(binding, Binding) or not binding.description:
                    continue
                # Textual lists its own Quit (ours: action_quit asks first) and help_quit;
                # a screen's app.* keys are the app's own, listed once.
                if binding.action in seen or binding.action in ("help_quit", "request_quit") \
                        or binding.action.startswith("app."):
                    continue
                seen.add(binding.action)
                action = binding.action

                async def run(action: str = action, source: object = source) -> None:
                    target = "app." if source is self else "screen."
                    await self.run_action(target + action)

                from chump_tui.tui.screens.help import pretty_key

                keys = ", ".join(pretty_key(k) for k in binding.key.split(","))
                yield SystemCommand(binding.description, f"key: {keys}", run)
