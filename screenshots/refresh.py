"""Render the README's pictures: the console headless, drawn cell by cell into PNG files.

Run with ``.venv/bin/python screenshots/refresh.py`` (Pillow is in the test extras). Each
picture is the same frozen app the snapshot tests use (fixed clock and size). Every
character is drawn at its own cell of a fixed grid in DejaVu Sans Mono, so no font's
metrics can push one column over the next (an SVG rasterised with another font did:
``DEMO-001#1`` collided). The SVG copies are Textual's own screenshots of the same screens.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from rich.color import Color
from rich.console import Console
from rich.segment import Segment

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.tui_factory import (  # noqa: E402
    claude_events,
    every_state,
    frozen_app,
    record,
    stop_idle_children,
)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_SIZE = 15
DEFAULT_FG = (224, 224, 224)
DEFAULT_BG = (30, 30, 30)


def font(bold: bool) -> ImageFont.FreeTypeFont:
    name = "DejaVuSansMono-Bold.ttf" if bold else "DejaVuSansMono.ttf"
    return ImageFont.truetype(str(FONT_DIR / name), FONT_SIZE)


def rgb(color: Color | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if color is None or color.is_default:
        return default
    triplet = color.get_truecolor()
    return (triplet.red, triplet.green, triplet.blue)


def screen_segments(app: Any) -> list[list[Segment]]:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False,
                      safe_box=False)
    render = app.screen._compositor.render_update(full=True,
                                                  screen_stack=app._background_screens)
    console.print(render)
    lines: list[list[Segment]] = [[]]
    for segment in console._record_buffer:
        if segment.control:
            continue
        parts = segment.text.split("\n")
        for i, part in enumerate(parts):
            if i:
                lines.append([])
            if part:
                lines[-1].append(Segment(part, segment.style))
    return lines[:height]


def draw(lines: list[list[Segment]], width: int, target: Path) -> None:
    regular, bold = font(False), font(True)
    cell_w = round(regular.getlength("M"))
    ascent, descent = regular.getmetrics()
    cell_h = ascent + descent + 2
    image = Image.new("RGB", (width * cell_w, len(lines) * cell_h), DEFAULT_BG)
    pen = ImageDraw.Draw(image)
    for row, segments in enumerate(lines):
        col = 0
        for segment in segments:
            style = segment.style
            fg = rgb(style.color if style else None, DEFAULT_FG)
            bg = rgb(style.bgcolor if style else None, DEFAULT_BG)
            if style is not None and style.reverse:
                fg, bg = bg, fg
            face = bold if style is not None and style.bold else regular
            for char in segment.text:
                x, y = col * cell_w, row * cell_h
                pen.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=bg)
                if char.strip():
                    pen.text((x, y + 1), char, font=face, fill=fg)
                col += 1
    image.save(target, optimize=True)


Press = Callable[[Any], Awaitable[None]]


async def shoot(name: str, app: Any, size: tuple[int, int], keys: list[str]) -> None:
    async with app.run_test(size=size) as pilot:
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.3)
        (HERE / f"{name}.svg").write_text(app.export_screenshot(), encoding="utf-8")
        draw(screen_segments(app), size[0], HERE / f"{name}.png")


def main() -> None:
    running = record("DEMO-001", "running", elapsed=95, harness="claude")
    monitor_records = [(running, claude_events()), *every_state()[1:]]
    shots: list[tuple[str, Any, tuple[int, int], list[str]]] = [
        ("backlog", frozen_app(), (140, 40), ["down"] * 7),
        ("dispatch", frozen_app(), (140, 40), ["space", "down", "down", "down", "space", "d"]),
        ("monitor", frozen_app(monitor_records), (160, 50), ["m"]),
        ("summary", frozen_app(every_state()), (140, 30), ["s"]),
    ]
    try:
        for name, app, size, keys in shots:
            asyncio.run(shoot(name, app, size, keys))
            print(f"screenshots/{name}.png", file=sys.stderr)
    finally:
        stop_idle_children()


if __name__ == "__main__":
    main()
