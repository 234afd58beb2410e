"""Text someone else wrote, made safe to show: the one place outside text is rendered.

Backlog fields, agent output, ``gh`` and ``git`` output, paths and error messages
that quote them all pass through :func:`visible` (one record, one line) or
:func:`visible_block` (newlines kept) before they reach a terminal, a widget, a
plain-mode line or an export. Control characters become visible symbols: ESC is
``␛`` and the other C0 controls their U+2400 pictures, so ``ESC ] 0 ; … BEL``
shows as ``␛]0;…␇`` and never sets a terminal title, wipes the screen or writes
the clipboard. C1 controls (``0x9b`` is CSI on some terminals), lone surrogates
(undecodable file names) and bidirectional overrides are replaced too.

The console also never parses outside text as markup: see ``chump_tui.tui.text``.
"""

from __future__ import annotations

import re

_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)}
_PICTURES[0x7F] = "\u2421"  # ␡
_PICTURES[0x09] = " "  # a tab moves the cursor, nothing worse: one space keeps columns honest

_TABLE: dict[int, str] = dict(_PICTURES)
_TABLE.update({code: "\ufffd" for code in range(0x80, 0xA0)})  # C1 controls
_TABLE.update({code: "\ufffd" for code in range(0xD800, 0xE000)})  # lone surrogates
# Bidirectional controls reorder what follows them (a "Trojan Source" line reads one
# way and is another); line and paragraph separators break a record in two.
for _code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
              *range(0x2066, 0x206A)):
    _TABLE[_code] = f"<U+{_code:04X}>"

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")

_BLOCK_TABLE = dict(_TABLE)
del _BLOCK_TABLE[0x0A]
_BLOCK_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                           "\u2066-\u2069\ud800-\udfff]")


def visible(value: object) -> str:
    """One line: every control character shown as a symbol (a newline as ``␊``)."""
    text = value if isinstance(value, str) else str(value)
    if _UNSAFE.search(text) is None:
        return text
    return text.translate(_TABLE)


def visible_block(value: object) -> str:
    """Like :func:`visible`, but newlines (and CRLF) stay line breaks."""
    text = value if isinstance(value, str) else str(value)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if _BLOCK_UNSAFE.search(text) is None:
        return text
    return text.translate(_BLOCK_TABLE)


def one_line(value: object, limit: int = 0) -> str:
    """:func:`visible`, cut to ``limit`` characters (0: no limit) with an ellipsis."""
    text = visible(value)
    if limit and len(text) > limit:
        return text[: max(0, limit - 1)] + "…"
    return text
