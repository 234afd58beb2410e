"""The monitor's output view: follows new lines, scrolls back with the wheel, shows no escapes."""

from __future__ import annotations

from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from chump_tui.tui.widgets.output_view import MAX_VIEW_LINES, OutputView, printable


class ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputView(id="output")


async def wheel(pilot: Pilot[None], view: OutputView, up: bool) -> None:
    kind = events.MouseScrollUp if up else events.MouseScrollDown
    view.post_message(kind(view, 1, 1, 0, -1 if up else 1, 0, False, False, False))
    await pilot.pause()


def screen_text(view: OutputView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.size.height)]


def test_printable_replaces_control_characters_and_expands_tabs() -> None:
    assert printable("\x1b[31mred\x1b[0m\tend\x07") == "␛[31mred␛[0m    end␇"


async def test_follows_the_end_then_stays_put_when_scrolled_back() -> None:
    app = ViewApp()
    async with app.run_test(size=(40, 6)) as pilot:
        view = app.query_one(OutputView)
        lines = [f"line {i}" for i in range(20)]
        view.follow("A#1", 20, lines)
        await pilot.pause()
        assert screen_text(view) == [f"line {i}" for i in range(14, 20)]
        await wheel(pilot, view, up=True)  # one wheel step: three lines back
        assert view.back == 3
        assert screen_text(view)[-1] == "line 16"
        lines += ["line 20", "line 21"]
        view.follow("A#1", 22, lines)  # new output does not move what is on screen
        assert screen_text(view)[-1] == "line 16"
        assert "back" in str(view.border_subtitle)
        for _ in range(5):
            await wheel(pilot, view, up=False)
        assert view.back == 0
        assert screen_text(view)[-1] == "line 21"


async def test_switching_agent_replaces_the_lines_and_the_buffer_is_bounded() -> None:
    app = ViewApp()
    async with app.run_test(size=(40, 6)) as pilot:
        view = app.query_one(OutputView)
        view.follow("A#1", 3, ["a", "b", "c"])
        view.follow("B#1", 1, ["only b"])
        await pilot.pause()
        assert view.lines == ["only b"]
        assert "B#1" in str(view.border_title)
        flood = [f"x{i}" for i in range(MAX_VIEW_LINES + 500)]
        view.follow("B#1", 1 + len(flood), flood)
        assert len(view.lines) == MAX_VIEW_LINES
        assert view.lines[-1] == flood[-1]
