"""An attempt's patch (``g`` on the monitor): its files with their + and −, the diff
coloured and scrollable, ``n`` / ``p`` from file to file. Read off the UI thread."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from chump_tui.dispatch_record import Dispatch
from chump_tui.patch import Patch, PatchFile, read_patch
from chump_tui.tui.text import assemble, line

MAX_SHOWN_LINES = 20_000


def file_text(patch_file: PatchFile) -> Text:
    out = Text()
    for raw in patch_file.lines:
        style = ("bold" if raw.startswith(("diff --git", "index ", "+++", "---")) else
                 "green" if raw.startswith("+") else "red" if raw.startswith("-") else
                 "cyan" if raw.startswith("@@") else "")
        out.append_text(line(raw, style))
        out.append("\n")
    return out


class PatchScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close"),
                Binding("n", "file(1)", "Next file"),
                Binding("p", "file(-1)", "Previous file")]

    def __init__(self, dispatch: Dispatch, repo_root: Path, base: str) -> None:
        super().__init__()
        self.dispatch = dispatch
        self.repo_root = repo_root
        self.base = base
        self.patch: Patch | None = None
        self.current = 0

    def compose(self) -> ComposeResult:
        d = self.dispatch
        with Vertical(id="dialog", classes="wide patch"):
            yield Static(line(f"patch · {d.gap_id} #{d.attempt}", "bold"), id="dialog-title")
            yield Static(Text("reading the patch …", style="dim"), id="patch-files")
            yield VerticalScroll(id="patch-body")
            yield Static(Text("n / p: next / previous file   ↑ ↓ PgUp PgDn: scroll   esc: close",
                              style="dim"), id="dialog-hint")

    def on_mount(self) -> None:
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

    def action_close(self) -> None:
        self.dismiss(None)
