"""The detail pane for the highlighted gap: what it is, why it can or cannot go, its deps."""

from __future__ import annotations

from collections.abc import Mapping, Set

from rich.console import Group
from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from chump_tui.backlog import Gap
from chump_tui.tui.text import block, line

MAX_FIELD_CHARS = 64 * 1024
"""A field longer than this (a hostile backlog's megabyte title) is cut, saying so."""


class GapDetail(Static, can_focus=True):
    """Tab focuses it; the keys below scroll a long description."""

    BINDINGS = [
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
        Binding("up", "scroll_up", "Up", show=False),
        Binding("down", "scroll_down", "Down", show=False),
    ]

    def show(self, gap: Gap | None, reason: str | None, done: Set[str],
             by_id: Mapping[str, Gap]) -> None:
        if gap is None:
            self.update(Text("No gap highlighted.", style="dim"))
            return
        parts: list[Text] = [
            line(gap.id, "bold"),
            line(gap.title or "(no title)", "bold cyan"),
            line(f"priority {gap.priority or '-'}   effort {gap.effort or '-'}   "
                 f"status {gap.status or '-'}"),
            Text("✓ pickable now", style="bold green") if reason is None
            else line(f"✗ {reason}", "yellow"),
        ]
        for label, key in (("Description", "description"),
                           ("Acceptance", "acceptance_criteria"), ("Acceptance", "acceptance")):
            body = gap.text(key)
            if body:
                if len(body) > MAX_FIELD_CHARS:
                    body = (body[:MAX_FIELD_CHARS] + f" … ({len(body) - MAX_FIELD_CHARS} more "
                            "characters in the backlog file)")
                parts += [Text(""), Text(label, style="bold underline"), block(body)]
        if gap.depends_on:
            parts += [Text(""), Text("Depends on", style="bold underline")]
            for dep in gap.depends_on:
                known = by_id.get(dep)
                status = known.status if known else "not in backlog"
                style = "green" if dep in done else "yellow"
                mark = "✓" if dep in done else "✗"
                parts.append(line(f" {mark} {dep}  ({status or 'no status'})", style))
        self.update(Group(*parts))
