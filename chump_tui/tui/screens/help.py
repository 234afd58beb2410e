"""``?`` help: every key of the app and of the screen underneath, read from their bindings."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

STATES = [
    ("DISPATCHING", "making the worktree, claiming the gap, starting the agent"),
    ("RUNNING", "the agent works; ▶ on its card says what it is doing now"),
    ("QUIET 1m10s", "no output for half its watchdog's time: killed at the full time "
                    "(--idle-timeout), unless a process beneath it (a build) is busy"),
    ("PR OPEN #n", "its PR is open: never stalled or killed while it is"),
    ("DIRTY", "the open PR needs a rebase onto its base before it can merge"),
    ("EXITED, NO PR", "exited cleanly without a PR yet: watched until the soft deadline "
                      "(r retries it now)"),
    ("STALLED", "no PR by the soft deadline: a warning while the agent runs (killed at 2×), "
                "final once it has exited"),
    ("KILLING", "the agent CLI stopped, its tools told to stop; SIGKILL when the countdown "
                "ends (ctrl+k: SIGKILL now)"),
    ("SHIPPED", "its PR merged"),
    ("CI-FAILED", "its PR was closed without merging"),
    ("EXITED n", "the agent ended on its own with exit code n (the reason says why)"),
    ("KILLED", "stopped: by you, a deadline or a watchdog (the reason says which)"),
    ("SPAWN-FAILED", "a dispatch step failed (worktree, claim, start); r retries"),
    ("QUEUED", "a fleet dispatch waiting for a host with a free slot, or trying again after "
               "the broker or a host failed (until --dispatch-deadline)"),
    ("TAKEN", "another console or session holds the gap: not dispatched, not a failure"),
]


# What a key does beyond its footer word.
MORE = {"toggle_select": "select / unselect the highlighted gap, then move down",
        "auto_pick": "select the next max-parallel pickable gaps",
        "dispatch": "dispatch the selection (or the highlighted gap) after a confirmation",
        "kill": "kill the selected agent: the agent at once, its tools after the grace "
                "(on a KILLING card: SIGKILL now)",
        "tool_results": "every tool the selected attempt called; enter shows its whole result",
        "maximize_output": "the output pane fills the screen (again: back to the cards)",
        "retry": "retry an ended, unshipped attempt (or one that exited without a PR)",
        "follow_up": "tell the selected attempt's agent what to do next: its conversation "
                     "resumes (a running one is stopped first) as the card's next run",
        "review_note": "write a review of this patch: it goes to the agent as a follow-up",
        "search": "search the patch (enter: next match, shift+enter: previous)",
        "warnings": "list the backlog's warnings",
        "toggle_continuous": "continuous mode on/off: refill up to max-parallel as agents end",
        "remove_worktree": "remove the worktree of an ended attempt (branch kept)",
        "diff": "the selected attempt's patch against its base, file by file (n / p), "
                "searchable (/), with a review note to the agent (f)",
        "shell": "open $SHELL in the selected worktree"}


def binding_rows(source: object) -> list[tuple[str, str]]:
    rows = []
    for binding in getattr(source, "BINDINGS", []):
        if isinstance(binding, Binding) and binding.description \
                and not binding.action.startswith("app."):  # listed under Everywhere
            keys = ", ".join(pretty_key(k) for k in binding.key.split(","))
            rows.append((keys, MORE.get(binding.action, binding.description)))
    return rows


def pretty_key(key: str) -> str:
    """A key as a person types it (``question_mark`` is ``?``)."""
    return PRETTY.get(key, key)


PRETTY = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc",
          "ctrl+c": "ctrl+c", "left": "←", "right": "→", "up": "↑", "down": "↓"}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, underneath: Screen[object]) -> None:
        super().__init__()
        self.underneath = underneath

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=False)
        table.add_column("key", style="bold cyan", no_wrap=True, width=14)
        table.add_column("action")
        name = type(self.underneath).__name__.removesuffix("Screen")
        for title, source in ((f"{name} screen", self.underneath), ("Everywhere", self.app)):
            rows = binding_rows(source)
            if rows:
                table.add_row(Text(title, style="bold underline"), "")
                for key, description in rows:
                    table.add_row(key, description)
                table.add_row("", "")
        table.add_row(Text("Palette", style="bold underline"), "")
        table.add_row("ctrl+p", "command palette: every action above, searchable")
        table.add_row("", "")
        table.add_row(Text("States", style="bold underline"), "")
        for state, meaning in STATES:
            table.add_row(state, meaning)
        with Vertical(id="dialog"):
            yield Static(Text("Keys", style="bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(table)
            yield Static(Text("esc or ? to close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
