"""The title bar: icon, title centred, sub-title after it, cut with … when narrow, live."""

from __future__ import annotations

from textual.app import App, ComposeResult

from chump_tui.tui.widgets.title_bar import ICON, TitleBar


class TitleApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TitleBar()

    def on_mount(self) -> None:
        self.title = "chump-tui — DRY-RUN"
        self.sub_title = "/repo"


async def test_title_is_centred_and_follows_the_app_title() -> None:
    app = TitleApp()
    async with app.run_test(size=(80, 3)) as pilot:
        await pilot.pause()
        bar = app.query_one(TitleBar)
        line = bar.render_line(0).text
        assert line.startswith(f" {ICON}")
        shown = "chump-tui — DRY-RUN — /repo"
        start = line.index(shown)
        assert abs((start - 8) - (80 - 16 - len(shown)) // 2) <= 1
        app.title = "chump-tui — EXECUTE"
        await pilot.pause()
        assert "EXECUTE — /repo" in bar.render_line(0).text


async def test_a_narrow_bar_cuts_the_title_with_an_ellipsis() -> None:
    app = TitleApp()
    async with app.run_test(size=(30, 3)) as pilot:
        await pilot.pause()
        line = app.query_one(TitleBar).render_line(0).text
        assert "…" in line and len(line) <= 30
