"""An attempt's patch (``g`` on the monitor): its files with their + and −, the diff
coloured and scrollable, ``n`` / ``p`` from file to file, ``/`` to search it, and ``f`` to
write a review note that goes to the agent as a follow-up. Read off the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from chump_tui.dispatch_record import Dispatch
from chump_tui.patch import Patch, PatchFile, read_patch
from chump_tui.tui.text import assemble, line

MAX_SHOWN_LINES = 20_000


def file_text(patch_file: PatchFile, query: str = "", current: int = -1) -> Text:
    """A file's diff, coloured; ``query``'s matches marked, line ``current`` the one the
    search stands on."""
    out = Text()
    for n, raw in enumerate(patch_file.lines):
        style = ("bold" if raw.startswith(("diff --git", "index ", "+++", "---")) else
                 "green" if raw.startswith("+") else "red" if raw.startswith("-") else
                 "cyan" if raw.startswith("@@") else "")
        text = line(raw, style)
        if query:
            text.highlight_words([query], "black on yellow", case_sensitive=False)
            if n == current:
                text.stylize("reverse")
        out.append_text(text)
        out.append("\n")
    return out


def matches(files: list[PatchFile], query: str) -> list[tuple[int, int]]:
    """(file, line) of every line holding ``query`` (case does not matter)."""
    wanted = query.lower()
    return [(f, n) for f, patch_file in enumerate(files)
            for n, raw in enumerate(patch_file.lines) if wanted in raw.lower()]


class PatchScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close"),
                Binding("n", "file(1)", "Next file"),
                Binding("p", "file(-1)", "Previous file"),
                Binding("slash", "search", "Search"),
                Binding("f", "review_note", "Review note")]

    def __init__(self, dispatch: Dispatch, repo_root: Path, base: str,
                 on_review: Callable[[str], None] | None = None,
                 patch: Patch | None = None) -> None:
        super().__init__()
        self.dispatch = dispatch
        self.repo_root = repo_root
        self.base = base
        self.on_review = on_review  # a review note's start, to the follow-up dialog
        self.patch: Patch | None = None
        self._given = patch  # a patch read already: shown as it is
        self.current = 0
        self.query_text = ""
        self.found: list[tuple[int, int]] = []
        self.match = -1

    def compose(self) -> ComposeResult:
        d = self.dispatch
        with Vertical(id="dialog", classes="wide patch"):
            yield Static(line(f"patch · {d.gap_id} #{d.attempt}", "bold"), id="dialog-title")
            yield Static(Text("reading the patch …", style="dim"), id="patch-files")
            yield VerticalScroll(id="patch-body")
            yield Input(placeholder="search the patch (enter: next match, esc: done)",
                        id="patch-search", classes="-hidden")
            yield Static(Text(HINT, style="dim"), id="dialog-hint")

    def on_mount(self) -> None:
        if self._given is not None:
            self._show(self._given)
        else:
            self._load()

    @work(thread=True, group="patch", exit_on_error=False)
    def _load(self) -> None:
        d = self.dispatch
        patch = read_patch(self.repo_root, "" if d.worktree_removed else d.worktree,
                           d.branch, self.base)
        self.app.call_from_thread(self._show, patch)

    def _show(self, patch: Patch) -> None:
        self.patch = patch
        body = self.query_one("#patch-body", VerticalScroll)
        if patch.error or not patch.files:
            said = patch.error or f"no changes yet: {patch.source}"
            self.query_one("#patch-files", Static).update(line(said, "yellow"))
            return
        shown = 0
        widgets = []
        for n, patch_file in enumerate(patch.files):
            if shown > MAX_SHOWN_LINES:
                break
            shown += len(patch_file.lines)
            widgets.append(Static(file_text(patch_file), id=f"patch-file-{n}",
                                  classes="patch-file"))
        if patch.cut or shown > MAX_SHOWN_LINES:
            widgets.append(Static(Text("… the patch is longer than shown here; "
                                       "git diff in the worktree has all of it", style="dim")))
        body.mount_all(widgets)
        self._list_files()
        body.focus()

    def _list_files(self) -> None:
        assert self.patch is not None
        parts = [assemble((f"{len(self.patch.files)} file(s) ", "bold"),
                          (f"+{self.patch.added} ", "green"), (f"−{self.patch.removed}", "red"),
                          ("   " + self.patch.source, "dim"))]
        for n, f in enumerate(self.patch.files[:12]):
            mark = "▶ " if n == self.current else "  "
            parts.append(assemble((mark, "bold"), f.path, (f"  +{f.added}", "green"),
                                  (f" −{f.removed}", "red")))
        if len(self.patch.files) > 12:
            parts.append(Text(f"  … {len(self.patch.files) - 12} more (n / p)", style="dim"))
        self.query_one("#patch-files", Static).update(Text("\n").join(parts))

    def action_file(self, step: int) -> None:
        if self.patch is None or not self.patch.files:
            return
        last = len(self.query(".patch-file")) - 1  # a long patch shows its first files
        self.current = max(0, min(self.current + step, last))
        target = self.query(f"#patch-file-{self.current}")
        if target:
            self.query_one("#patch-body", VerticalScroll).scroll_to_widget(target.first(),
                                                                           top=True)
        self._list_files()

    def _shown_files(self) -> list[PatchFile]:
        assert self.patch is not None
        return self.patch.files[:len(self.query(".patch-file"))]

    # ------------------------------------------------------------------ search
    def action_search(self) -> None:
        if self.patch is None or not self.patch.files:
            return
        search = self.query_one("#patch-search", Input)
        search.remove_class("-hidden")
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            return
        if query != self.query_text:
            self.query_text, self.match = query, -1
            self.found = matches(self._shown_files(), query)
        if not self.found:
            self._say(f"no line holds {query!r}")
            self._mark(None)
            return
        self.match = (self.match + 1) % len(self.found)
        self._mark(self.found[self.match])
        self._say(f"match {self.match + 1} of {len(self.found)} for {query!r}   "
                  "enter: next   esc: done")

    def _mark(self, at: tuple[int, int] | None) -> None:
        """Every file's matches marked, the current one reversed and scrolled to."""
        for n, patch_file in enumerate(self._shown_files()):
            current = at[1] if at is not None and at[0] == n else -1
            self.query_one(f"#patch-file-{n}", Static).update(
                file_text(patch_file, self.query_text if at is not None else "", current))
        if at is None:
            return
        self.current = at[0]
        self._list_files()
        target = self.query_one(f"#patch-file-{at[0]}", Static)
        body = self.query_one("#patch-body", VerticalScroll)
        self.call_after_refresh(lambda: body.scroll_to(
            y=max(0, target.virtual_region.y + at[1] - 3), animate=False))

    def _say(self, text: str) -> None:
        self.query_one("#dialog-hint", Static).update(line(text, "dim"))

    # ------------------------------------------------------------------ review
    def action_review_note(self) -> None:
        if self.on_review is None:
            return
        where = ""
        if self.patch is not None and self.patch.files:
            where = f" ({self.patch.files[self.current].path})"
        self.dismiss(None)
        self.on_review(f"Review of your patch{where}:\n")

    def action_close(self) -> None:
        search = self.query_one("#patch-search", Input)
        if search.has_focus:  # esc ends the search, not the view
            search.add_class("-hidden")
            self.query_one("#patch-body", VerticalScroll).focus()
            self._say(HINT)
            return
        self.dismiss(None)


HINT = ("n / p: next / previous file   /: search   f: review note to the agent   "
        "↑ ↓ PgUp PgDn: scroll   esc: close")
