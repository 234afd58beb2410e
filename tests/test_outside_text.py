"""Text from outside never reaches the terminal as control sequences, never parses as markup,
and one record stays one line: in every widget, in plain mode and in the exports."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console, Group, RenderableType

from chump_tui.backlog import Backlog, Gap
from chump_tui.dispatch_record import Dispatch
from chump_tui.monitor import DispatchOutcome
from chump_tui.outside_text import visible, visible_block
from chump_tui.plain import summary_lines
from chump_tui.pr_providers import PrStatus
from chump_tui.summary_export import export_summary
from chump_tui.tui.text import assemble, block, line
from chump_tui.tui.widgets.dispatch_card import card_lines
from chump_tui.tui.widgets.gap_table import row_cells
from chump_tui.tui.widgets.status_line import StatusTally, status_text
from tests.tui_factory import FROZEN_NOW, record, screen_text

HOSTILE = [
    "[/]", "[/i]", "[bold", "[link=https://evil.example]click[/link]", "[archive]",
    "\x1b]0;pwned\x07", "\x1b[2J", "\x1b]52;c;cm0gLXJmIH4=\x07", "\x9b2J", "\x00nul",
    "two\nDISPATCHED: FORGED in /tmp as PID 1", "cr\rover", "\ud800\udfff", "\u202eevil",
    "tab\there", "\u2028sep",
]

# What may never reach a terminal: C0 and C1 controls (ESC among them), DEL, lone surrogates,
# bidi overrides and line separators.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                    "\ud800-\udfff]")

outside_strings = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=60),
                            st.lists(st.sampled_from(HOSTILE), max_size=4).map("".join))


def segments_text(renderable: RenderableType, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    text = "".join(seg.text for seg in console.render(renderable) if not seg.control)
    return text.removesuffix("\n")


def assert_safe(text: str, multiline: bool = False) -> None:
    bad = UNSAFE.findall(text.replace("\n", "") if multiline else text)
    assert not bad, f"unsafe characters reached the output: {bad!r} in {text!r}"


@given(outside_strings)
def test_visible_leaves_nothing_unsafe_and_one_line(value: str) -> None:
    shown = visible(value)
    assert_safe(shown)
    assert "\n" not in shown
    assert_safe(visible_block(value), multiline=True)


@given(outside_strings)
def test_widget_text_is_never_markup(value: str) -> None:
    """Shown exactly as written (made visible): no markup parsed, nothing dropped."""
    assert segments_text(line(value), width=10_000) == visible(value)
    assert segments_text(assemble(("x", "bold"), value), width=10_000) == "x" + visible(value)
    shown = segments_text(block(value), width=10_000)
    assert_safe(shown, multiline=True)
    assert shown == visible_block(value)


def hostile_dispatch(text: str, phase: str = "ended") -> Dispatch:
    return record("HOST-1", phase, title=text, error=text, kill_reason=text, backend=text,
                  branch="claude/" + text, worktree="/repo/" + text,
                  pr=PrStatus(7, text, text),
                  outcome=DispatchOutcome.killed(text) if phase == "ended" else None)


@settings(max_examples=60, deadline=None)
@given(outside_strings)
def test_every_console_renderer_shows_outside_text_safely(value: str) -> None:
    gap = Gap(value or "x", value, value, value, value, (value,), {"description": value})
    cells = row_cells((gap, "0/1", value, True))
    assert_safe("".join(text for text, _style in cells))
    for phase in ("ended", "running", "killing", "spawn_failed"):
        d = hostile_dispatch(value, phase)
        card = Group(*card_lines(d, FROZEN_NOW, [value, value]))
        assert_safe(segments_text(card), multiline=True)
        assert_safe(segments_text(status_text(StatusTally.of([d]), 3, value, False, 0, False), 10_000))
    for out in summary_lines([hostile_dispatch(value)]):
        assert_safe(visible(out))


def test_markdown_export_is_visible_and_inert(tmp_path: Path) -> None:
    rows = [hostile_dispatch(text) for text in HOSTILE]
    json_path, md_path = export_summary(rows, tmp_path, FROZEN_NOW, "[link=x]db\x1b[2J")
    md = md_path.read_text()
    assert_safe(md, multiline=True)
    table = [ln for ln in md.splitlines() if ln.startswith("| HOST-1")]
    assert len(table) == len(HOSTILE)  # one record, one line
    assert "[link" not in md.replace("\\[link", "")
    json.loads(json_path.read_text())


# ---------------------------------------------------------------------------- console
def hostile_backlog() -> Backlog:
    gaps = [Gap(f"HOST-{i}", f"title {text}", "P1", "s", "open", (),
                {"description": f"desc {text}", "acceptance": [text]})
            for i, text in enumerate(HOSTILE)]
    gaps.append(Gap("[/]", "bad id", "P1", "s", "open"))
    return Backlog(Path("docs/[archive]/gaps-[/i].yaml"), gaps, ["warning [/] \x1b]0;x\x07"])


async def test_console_survives_hostile_text_on_every_screen() -> None:
    from chump_tui.tui.screens.confirm_dispatch import ConfirmDispatch
    from tests.tui_factory import frozen_app, until

    records = [(hostile_dispatch(text), [text, f"agent says {text}"]) for text in HOSTILE[:6]]
    records.append((hostile_dispatch(HOSTILE[6], "running"), HOSTILE))
    app = frozen_app(records)
    app.setup.backlog = hostile_backlog()
    app.by_id = app.setup.backlog.by_id()
    app.setup.banner = "banner [/] \x1b]0;t\x07"
    async with app.run_test(size=(140, 44)) as pilot:
        app.github_error = "gh failed [/] \x1b[2J"
        for _ in range(len(HOSTILE)):
            assert_safe(screen_text(app), multiline=True)
            await pilot.press("down")
        await pilot.press("slash", "[", "/", "]", "enter")  # searching for markup
        await pilot.pause()
        assert_safe(screen_text(app), multiline=True)
        await pilot.press("escape", "space", "d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDispatch), 5, "dialog")
        assert_safe(screen_text(app), multiline=True)
        await pilot.press("escape", "w")
        await pilot.pause()
        assert_safe(screen_text(app), multiline=True)
        await pilot.press("escape", "m")
        await until(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", 5, "monitor")
        for _ in range(len(records)):
            await pilot.pause(0.15)
            text = screen_text(app)
            assert_safe(text, multiline=True)
            await pilot.press("right")
        assert "␛]0;pwned␇" in screen_text(app)  # shown, made visible
        app.notify("toast [/] \x1b]0;t\x07", title="[/]")
        await pilot.press("s")
        await until(pilot, lambda: type(app.screen).__name__ == "SummaryScreen", 5, "summary")
        await pilot.pause(0.2)
        assert_safe(screen_text(app), multiline=True)
    assert app.return_code in (0, None)


def test_plain_mode_prints_no_escape_and_one_line_per_record(tmp_path: Path) -> None:
    titles = [text for text in HOSTILE if not UNSAFE.search(text, 0) or "\ud800" not in text]
    gaps = [{"id": f"P-{i}", "title": text, "priority": "P1", "effort": "s", "status": "open"}
            for i, text in enumerate(titles)]  # YAML cannot carry a lone surrogate
    backlog = tmp_path / "gaps.yaml"
    backlog.write_text(json.dumps({"gaps": gaps}, ensure_ascii=True))
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog",
                           str(backlog), "--max-parallel", str(len(titles)),
                           "--repo-root", str(tmp_path)],
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout + done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1 + len(titles)
    assert sum(ln.startswith("WOULD DISPATCH: ") for ln in lines) == len(titles)
    assert not any(ln.startswith("DISPATCHED:") for ln in lines)


def test_crash_exits_non_zero_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A bug in a screen (simulated) ends the console with exit 1 and one line on stderr."""
    from chump_tui.cli import parse_args
    from chump_tui.tui.launch import run_console
    from chump_tui.tui.screens.backlog import BacklogScreen

    def boom(self: object) -> None:
        raise RuntimeError("boom [/] \x1b]0;x\x07")

    monkeypatch.setattr(BacklogScreen, "action_cycle_filter", boom)
    backlog = tmp_path / "gaps.yaml"
    backlog.write_text("gaps:\n  - {id: A-1, priority: P1, effort: s, status: open}\n")

    def run_app(app: Any) -> object:
        async def drive() -> None:
            async with app.run_test() as pilot:
                await pilot.press("f")
                await pilot.pause()

        with contextlib.suppress(RuntimeError):  # Pilot re-raises what crashed the app
            asyncio.run(drive())
        return None

    code = run_console(parse_args(["--backlog", str(backlog), "--repo-root", str(tmp_path)]),
                       None, run_app)
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "\x1b" not in err[0]
    assert "crashed (RuntimeError: boom [/] ␛]0;x␇)" in err[0]
    traceback_file = Path(err[0].split("traceback in ")[1])
    assert "RuntimeError" in traceback_file.read_text()
    traceback_file.unlink()


@pytest.mark.parametrize("text", ["\x1b]0;pwned\x07", "[/]"])
def test_markup_and_escapes_in_a_path_are_shown_as_written(text: str) -> None:
    out = segments_text(line(f"/repo/{text}/gaps.yaml"))
    assert out == visible(f"/repo/{text}/gaps.yaml")


def test_real_terminal_title_clipboard_and_screen_survive(git_repo: Path,
                                                          stub_env: dict[str, str]) -> None:
    """In tmux: a hostile backlog title and an agent printing escapes change neither the pane
    title nor the clipboard, and the console stays drawn."""
    from tests.tmux_session import TmuxPane

    (git_repo / "gaps.yaml").write_text(
        'gaps:\n  - {id: T-1, priority: P1, effort: s, status: open, '
        'title: "\\e]0;backlog-pwned\\a \\e[2J \\e]52;c;cHduZWQ=\\a [/] title"}\n')
    pane = TmuxPane(120, 40)
    try:
        pane.start(git_repo, {**stub_env, "FAKE_AGENT_MODE": "escapes"})
        pane.tmux("select-pane", "-t", pane.name, "-T", "sentinel-title")
        pane.run([sys.executable, "-m", "chump_tui", "--execute", "--backlog", "gaps.yaml",
                  "--tick", "0.3"])
        pane.wait_for(lambda s: "T-1" in s and "Dispatch" in s, 30, "the backlog")
        pane.send("a")
        pane.send("d")
        pane.wait_for(lambda s: "DISPATCH: 1 gap" in s, 10, "the dispatch dialog")
        pane.send("y")
        screen = pane.wait_for(lambda s: "␛]0;agent-pwned␇" in s, 30, "the agent's line")
        assert "^p palette" in screen.splitlines()[-1]  # the footer is still drawn
        assert "␛]0;backlog-pwned␇" in screen  # the card's title, made visible
        assert pane.title() == "sentinel-title"
        assert "pwned" not in pane.buffers()
        pane.wait_for(lambda s: "SHIPPED" in s, 30, "the outcome")
        pane.send("q")
        pane.wait_for(lambda s: "palette" not in s, 20, "the console to exit")
    finally:
        pane.close()
