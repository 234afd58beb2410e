"""Ending agents: a kill (the agent CLI at once, its tools after the grace, on a thread of
its own so the grace never holds anything else up), SIGKILL now, stopping every agent at
quit, and removing an ended attempt's worktree."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from chump_tui.engine.config import EngineConfig
from chump_tui.engine.outcomes import Outcomes
from chump_tui.engine.table import DispatchTable, Live
from chump_tui.monitor import DispatchOutcome
from chump_tui.paths import dispatch_paths
from chump_tui.spawners import Spawner


class Stopper:
    def __init__(self, table: DispatchTable, config: EngineConfig, outcomes: Outcomes,
                 repo_root: Path) -> None:
        self.table = table
        self.config = config
        self.outcomes = outcomes
        self.repo_root = repo_root

    def kill(self, key: str, reason: str = "killed by operator") -> bool:
        """Start killing one agent; returns at once (the grace runs on its own thread)."""
        with self.table.lock:
            live = self.table.live(key)
            if live is None or live.record.phase not in ("running", "stalled"):
                return False
            self.start_kill(live, reason, self.config.kill_grace_s)
            return True

    def start_kill(self, live: Live, reason: str, grace_s: float) -> None:
        """Caller holds the table's lock."""
        rec = live.record
        process = live.process
        if process is None or not process.group_alive():
            self.outcomes.finish(live, DispatchOutcome.killed(reason))
            return
        rec.phase = "killing"
        rec.kill_reason = reason
        rec.kill_deadline = self.table.clock() + grace_s
        self.table.changed(live, "killing")

        def run() -> None:
            # An agent CLI is stopped at once (no next request, no next tool); the grace is
            # for the tools it started.
            code = process.terminate_group(grace_s, stop_agent_first=bool(rec.harness))
            with self.table.lock:
                rec.exit_code = code
                self.outcomes.finish(live, DispatchOutcome.killed(reason))

        live.kill_thread = threading.Thread(target=run, name=f"kill-{rec.pid}", daemon=True)
        live.kill_thread.start()

    def force_kill(self, key: str) -> bool:
        """SIGKILL an agent being killed now, instead of waiting out its grace."""
        with self.table.lock:
            live = self.table.live(key)
            if live is None or live.record.phase != "killing" or live.process is None:
                return False
            process = live.process
        process.kill_now()
        return True

    def stop_all(self, reason: str, grace_s: float | None, spawners: Iterable[Spawner],
                 launchers: Callable[[], list[threading.Thread]]) -> None:
        """Kill every active agent in parallel and wait for all of them (blocking). A
        dispatch still in its steps (a slow claim script) is ended first: its step's process
        group is killed (``spawners`` are told to cancel) and it never starts its agent;
        ``launchers`` are the threads dispatching (a refill), waited for too."""
        self.table.stopping.set()
        for spawner in {id(s): s for s in spawners}.values():
            cancel = getattr(spawner, "cancel", None)  # test spawners have nothing to end
            if cancel is not None:
                cancel()
        grace = self.config.kill_grace_s if grace_s is None else grace_s
        self.table.wait(lambda: not any(lv.record.phase == "dispatching"
                                        for lv in self.table.rows.values()), 10)
        with self.table.lock:
            for live in self.table.rows.values():
                if live.record.phase in ("running", "stalled"):
                    self.start_kill(live, reason, grace)
                elif live.record.phase == "killing" and live.kill_thread is None:
                    self.outcomes.finish(live, DispatchOutcome.killed(reason))
            kill_threads = [lv.kill_thread for lv in self.table.rows.values()
                            if lv.kill_thread]
        for launcher in launchers():
            launcher.join(grace + 10)
        for thread in kill_threads:
            thread.join(grace + 10)
        with self.table.lock:
            # Anything a launcher finished starting after we looked.
            late = [lv for lv in self.table.rows.values()
                    if lv.record.phase in ("running", "stalled")]
            for live in late:
                self.start_kill(live, reason, grace)
            late_threads = [lv.kill_thread for lv in late if lv.kill_thread]
        for thread in late_threads:
            thread.join(grace + 10)

    def remove_worktree(self, key: str) -> str | None:
        """``git worktree remove --force`` for an ended dispatch; returns an error or None."""
        with self.table.lock:
            live = self.table.live(key)
            if live is None:
                return "no such dispatch"
            rec = dataclasses.replace(live.record)
            # Every attempt of a gap shares its worktree: a retry may be working in it.
            busy = [lv.record for lv in self.table.rows.values()
                    if lv.record.active and lv.record.gap_id == rec.gap_id]
        if busy:
            return (f"attempt #{busy[0].attempt} of {rec.gap_id} is {busy[0].label()} in "
                    "this worktree")
        if not rec.worktree or Path(rec.worktree) != dispatch_paths(self.repo_root,
                                                                    rec.gap_id)[0]:
            return "no worktree of ours to remove"
        if not Path(rec.worktree).exists():
            return None
        try:
            done = subprocess.run(
                ["git", "-C", str(self.repo_root), "worktree", "remove", "--force", rec.worktree],
                capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0:
            return done.stderr.decode("utf-8", errors="replace").strip() or "git failed"
        with self.table.lock:  # every attempt of the gap worked in it: their cards say so
            for other in self.table.rows.values():
                if other.record.gap_id == rec.gap_id and not other.record.worktree_removed:
                    other.record.worktree_removed = True
                    self.table.changed(other, "worktree removed")
        return None

