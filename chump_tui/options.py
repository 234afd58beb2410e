"""The options every front end runs with: one attribute per command-line flag.

Parsed by ``chump_tui.cli``; read by plain mode, the console and the engine assembly.
"""

from __future__ import annotations

from pathlib import Path


class Options:
    """The parsed flags, one attribute each (a test checks they match the parser)."""

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
    first_output_timeout_s: float
    idle_timeout_s: float
    continuous: bool
    include_shipped: bool  # gaps whose branch has a merged PR may be dispatched again
    fix_ci: int  # CI repairs per attempt (0: none)
    demo: bool
    harness: str
    nats: str | None  # the fleet's server: dispatch through workers, not locally
    nats_creds: Path | None
    trust_worker: list[str]  # worker keys or trust files the console believes
    insecure_broker: bool  # run on a broker that admits clients without credentials
    dispatch_deadline_s: float  # a fleet dispatch waits and retries this long (0: no limit)
    fleet_output: str  # full: every byte of a fleet agent's log; summary: what is shown
    notify: tuple[str, ...] | None  # the events to tell the operator about
    notify_url: str | None
    notify_cmd: list[str] | None
    budget_usd: float | None
    budget_tokens: int | None
    fleet_budget_usd: float | None
    budget_action: str  # stop | warn
    config: Path | None  # the settings file (read by the parser)
    print_config: bool
    read_only: bool  # the console watches the session and changes nothing

    def __init__(self, **values: object) -> None:
        vars(self).update(values)
