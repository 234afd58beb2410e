"""One card per dispatch attempt: identity, state, deadline bar, PR, last output lines."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from chump_tui.dispatch_record import Dispatch
from chump_tui.outside_text import visible

TAIL_LINES = 3
BAR_WIDTH = 24

STATE_STYLE = {
    "SHIPPED": "bold white on green",
    "CI-FAILED": "bold white on red",
    "KILLED": "bold white on red",
    "SPAWN-FAILED": "bold white on red",
    "STALLED": "bold black on yellow",
    "KILLING": "bold white on dark_orange",
    "DISPATCHING": "bold black on grey70",
    "EXITED, NO PR": "bold black on grey70",
}


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def state_class(label: str) -> str:
    if label.startswith("PR OPEN") or label == "RUNNING":
        return "running"
    return label.lower().replace(",", "").replace(" ", "-")


def deadline_bar(elapsed: float, soft: float) -> Text:
    """A bar whose full width is the hard (2x soft) deadline; '|' marks the soft one."""
    hard = 2 * soft
    filled = min(BAR_WIDTH, int(BAR_WIDTH * elapsed / hard)) if hard > 0 else BAR_WIDTH
    soft_at = BAR_WIDTH // 2
    style = "green" if elapsed <= soft else ("yellow" if elapsed <= hard else "red")
    bar = Text()
    for i in range(BAR_WIDTH):
        char = "█" if i < filled else "░"
        if i == soft_at and i >= filled:
            char = "┃"
        bar.append(char, style=style if i < filled else "grey42")
    return bar


def render_card(d: Dispatch, now: float, tail: list[str]) -> Group:
    label = d.label()
    if d.phase == "killing" and d.kill_deadline is not None:
        label = f"KILLING · SIGKILL in {max(0, int(d.kill_deadline - now + 0.999))}s"
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(visible(d.gap_id), style="bold")
    head.append(f" #{d.attempt}  ", style="dim")
    head.append(visible(d.title), style="italic")
    ident = Text(visible(d.branch), style="cyan", no_wrap=True, overflow="ellipsis")
    ident.append(f"  pid {d.pid if d.pid is not None else '-'}  {visible(d.backend or '-')}",
                 style="dim")
    state = Text(no_wrap=True, overflow="ellipsis")
    state.append(f" {label} ", style=STATE_STYLE.get(d.label(), "bold white on blue"))
    reason = d.reason()
    if reason and d.phase in ("ended", "spawn_failed", "killing"):
        state.append(f"  {visible(reason)}", style="grey70")
    elapsed = d.duration_s(now)
    timing = deadline_bar(elapsed, d.soft_deadline_s)
    timing.no_wrap = True
    timing.overflow = "ellipsis"
    timing.append(f" {fmt_duration(elapsed)} / {fmt_duration(d.soft_deadline_s)}"
                  f" / {fmt_duration(2 * d.soft_deadline_s)}", style="dim")
    if d.pr is not None:
        pr = Text(f"PR #{d.pr.number} {visible(d.pr.state)}", style="bold")
        if d.pr.merge_state_status.upper() == "DIRTY":
            pr.append("  DIRTY", style="bold yellow")
    else:
        pr = Text("no PR yet", style="dim")
    lines: list[Text] = [head, ident, state, timing, pr]
    for line in tail[-TAIL_LINES:]:
        lines.append(Text(f"› {visible(line)}", style="grey70", no_wrap=True, overflow="ellipsis"))
    lines += [Text("")] * (TAIL_LINES - min(TAIL_LINES, len(tail)))
    return Group(*lines)


class DispatchCard(Widget):
    """One dispatch's card. Fixed size, so a redraw never asks for a new layout.

    Selection is the monitor screen's state, not focus, so keys never race focus events.
    """

    @dataclass
    class Chosen(Message):
        key: str

    def __init__(self, key: str) -> None:
        super().__init__(classes="card")
        self.key = key
        self._renderable: RenderableType = ""
        self._state_class = ""
        self._last: tuple[object, ...] | None = None
        self.tail: list[str] = []
        self.tail_version = 0

    @property
    def drawn(self) -> bool:
        return self._last is not None

    def on_click(self, event: events.Click) -> None:
        self.post_message(self.Chosen(self.key))

    def show(self, d: Dispatch, now: float, tail: list[str], tail_version: int) -> None:
        """Redraw only when something visible changed."""
        second = int(now) if d.active else 0
        signature = (d, second, tail_version)
        if signature == self._last:
            return
        self._last = signature
        self.tail, self.tail_version = tail, tail_version
        css = f"-state-{state_class(d.label())}"
        if css != self._state_class:  # a class change re-applies CSS: only when it changes
            if self._state_class:
                self.remove_class(self._state_class)
            self.add_class(css)
            self._state_class = css
        self._renderable = render_card(d, now, tail)
        self.refresh()

    def render(self) -> RenderableType:
        return self._renderable
