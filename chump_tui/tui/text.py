"""Outside text for widgets: Rich ``Text`` built from visible strings, never markup.

A ``str`` handed to ``Static.update``, a DataTable cell or a toast is parsed as
markup: ``[/]`` in a gap title crashes the console and ``[link=…]`` becomes a
link. Every widget that shows text someone else wrote builds it here instead.
"""

from __future__ import annotations

from rich.text import Text

from chump_tui.outside_text import visible, visible_block

Part = str | tuple[str, str] | Text


def line(value: object, style: str = "") -> Text:
    """One line of outside text (control characters and newlines shown as symbols)."""
    return Text(visible(value), style=style)


def block(value: object, style: str = "") -> Text:
    """Outside text whose newlines are kept (descriptions, a diff stat, git's message)."""
    return Text(visible_block(value), style=style)


def assemble(*parts: Part) -> Text:
    """Pieces with their styles on one line; every string goes through ``visible`` (so a
    line break must be its own ``Text``: join lines with ``Text("\\n").join``)."""
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append(visible(part[0]), style=part[1])
        else:
            out.append(visible(part))
    return out
