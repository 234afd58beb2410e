"""An agent's log bytes as lines: bounded memory, whole characters, secrets redacted first.

``LineSplitter`` turns the chunks the log follower reads into complete lines. It
holds at most one partial line, and that one is bounded: a plain-text line
longer than MAX_LINE_CHARS is handed on in pieces while it grows (a progress
bar without newlines stays live), and a line that may be a JSON event (it starts
with ``{``) is kept whole up to MAX_JSON_LINE_BYTES so it can be parsed; beyond
that only its first HEAD_BYTES are kept with the line's size (a tool result can
be megabytes; what it was and how big is all the console needs).

Secrets are redacted before any cut, so a token straddling a split is never half
shown, and every cut falls on a character boundary (no U+FFFD from a split
multi-byte character).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

MAX_LINE_CHARS = 8192
"""A plain line longer than this is shown (and stored) in pieces."""

MAX_JSON_LINE_BYTES = 512 * 1024
"""A line starting with '{' is kept whole up to this size so it can be parsed."""

HEAD_BYTES = 64 * 1024
"""What is kept of a longer line: its beginning (event type, tool id, flags)."""

_SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
_MIN_SECRET_LEN = 8


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of secret-looking variables (OPENAI_API_KEY, GH_TOKEN, …), longest first."""
    found = {v for k, v in environ.items()
             if any(part in k.upper() for part in _SECRET_NAME_PARTS)
             and len(v) >= _MIN_SECRET_LEN}
    return sorted(found, key=len, reverse=True)


class Redactor:
    """Replaces secret values with ``***`` in every line we show or store."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = [s for s in secrets if s]
        self.longest = max((len(s) for s in self.secrets), default=0)
        raw = sorted({s.encode("utf-8", errors="surrogatepass") for s in self.secrets},
                     key=len, reverse=True)
        self._raw = raw
        self._raw_pattern = re.compile(b"|".join(re.escape(r) for r in raw)) if raw else None

    def redact_stream(self, data: bytes, final: bool = False) -> tuple[bytes, int]:
        """Bytes of a stream with every secret replaced, and how many bytes at the end were
        held back: they may be the start of a secret the next read completes (none when
        ``final``: a stream's end, where a secret's first bytes are masked as in
        ``drop_partial_tail``). The held bytes are passed again at the head of the next read."""
        if self._raw_pattern is None:
            return data, 0
        matches = list(self._raw_pattern.finditer(data))
        after_last = matches[-1].end() if matches else 0
        held = 0
        for secret in self._raw:
            for k in range(min(len(secret) - 1, len(data) - after_last), held, -1):
                if data.endswith(secret[:k]):
                    held = k
                    break
        redacted = self._raw_pattern.sub(b"***", data[:len(data) - held])
        if not final:
            return redacted, held
        return redacted + (b"***" if held > 3 else data[len(data) - held:]), 0

    def __call__(self, line: str) -> str:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, "***")
        return line

    def safe_cut(self, text: str, cut: int) -> int:
        """A cut at or before ``cut`` that splits no secret occurring in ``text``."""
        for secret in self.secrets:
            start = text.find(secret, max(0, cut - len(secret) + 1))
            while 0 <= start < cut:
                if start + len(secret) > cut:
                    cut = start
                    break
                start = text.find(secret, start + 1)
        return cut

    def drop_partial_tail(self, text: str) -> str:
        """A cut-off text whose end may be the start of a secret: that start is masked."""
        for secret in self.secrets:
            for k in range(min(len(secret) - 1, len(text)), 3, -1):
                if text.endswith(secret[:k]):
                    return text[:-k] + "***"
        return text


REDACT = Redactor(secret_values(os.environ))
"""This process's secrets; agents inherit the same environment."""


def redact(line: str) -> str:
    return REDACT(line)


class Line(NamedTuple):
    """One line of output: its text (redacted, maybe only its head) and size in bytes."""

    text: str
    size: int
    cut: bool = False  # only the first HEAD_BYTES were kept

    @property
    def json_candidate(self) -> bool:
        return self.text.startswith("{")


def _complete_utf8(data: bytes) -> int:
    """Length of ``data`` without a multi-byte character cut off at its end."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        byte = data[n - back]
        if byte < 0x80:
            return n
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return n if back >= need else n - back
    return n


class LineSplitter:
    def __init__(self, redactor: Redactor = REDACT, skip_first: bool = False) -> None:
        self.redactor = redactor
        self._partial = b""
        self._skip_first = skip_first  # reading from the middle of a file
        self._long_head: bytes | None = None  # a line past MAX_JSON_LINE_BYTES, its head
        self._long_size = 0

    def feed(self, data: bytes) -> list[Line]:
        out: list[Line] = []
        if self._skip_first:
            cut = data.find(b"\n")
            if cut < 0:
                return out
            data, self._skip_first = data[cut + 1:], False
        if self._long_head is not None:
            cut = data.find(b"\n")
            if cut < 0:
                self._long_size += len(data)
                return out
            self._long_size += cut
            out.append(self._long_line())
            data = data[cut + 1:]
        buf = self._partial + data if self._partial else data
        last = buf.rfind(b"\n")
        if last >= 0:
            out += self._whole(buf[:last])
            buf = buf[last + 1:]
        self._partial = b""
        out += self._keep_partial(buf)
        return out

    def flush(self) -> list[Line]:
        """The last line of an ended agent, which may have no newline."""
        out: list[Line] = []
        if self._long_head is not None:
            out.append(self._long_line())
        elif self._partial:
            out += self._whole(self._partial)
        self._partial = b""
        return out

    # ---------------------------------------------------------------- internals
    def _whole(self, chunk: bytes) -> list[Line]:
        """Complete lines. Decoded and redacted as one text (per-line work is what costs
        when a hundred agents write); lines too long to keep are cut to their heads."""
        text = self.redactor(chunk.decode("utf-8", errors="replace"))
        lines = text.split("\n")
        if len(text) <= MAX_JSON_LINE_BYTES or max(map(len, lines)) <= MAX_JSON_LINE_BYTES:
            return [Line(ln.removesuffix("\r"), len(ln)) for ln in lines]
        out: list[Line] = []
        for raw in chunk.split(b"\n"):
            if len(raw) > MAX_JSON_LINE_BYTES:
                out.append(self._head_line(raw[:HEAD_BYTES], len(raw)))
            else:
                text = self.redactor(raw.decode("utf-8", errors="replace"))
                out.append(Line(text.removesuffix("\r"), len(raw)))
        return out

    def _keep_partial(self, buf: bytes) -> list[Line]:
        if not buf:
            return []
        if buf.startswith(b"{"):
            if len(buf) <= MAX_JSON_LINE_BYTES:
                self._partial = buf
            else:
                self._long_head, self._long_size = buf[:HEAD_BYTES], len(buf)
            return []
        hold = self.redactor.longest
        if len(buf) <= MAX_LINE_CHARS + hold:
            self._partial = buf
            return []
        # A plain line still growing: hand on whole pieces, keep enough to see a secret.
        usable = _complete_utf8(buf)
        text = buf[:usable].decode("utf-8", errors="replace")
        out: list[Line] = []
        while len(text) > MAX_LINE_CHARS + hold:
            cut = self.redactor.safe_cut(text, MAX_LINE_CHARS) or MAX_LINE_CHARS
            piece = text[:cut]
            out.append(Line(self.redactor(piece), len(piece)))
            text = text[cut:]
        self._partial = text.encode("utf-8", errors="surrogatepass") + buf[usable:]
        return out

    def _head_line(self, head: bytes, size: int) -> Line:
        text = head[:_complete_utf8(head)].decode("utf-8", errors="replace")
        return Line(self.redactor.drop_partial_tail(self.redactor(text)), size, cut=True)

    def _long_line(self) -> Line:
        assert self._long_head is not None
        line = self._head_line(self._long_head, self._long_size)
        self._long_head, self._long_size = None, 0
        return line


def display_pieces(line: Line) -> list[str]:
    """A plain line as it is shown: pieces of at most MAX_LINE_CHARS, a cut line marked."""
    text = line.text
    pieces = [text[i:i + MAX_LINE_CHARS] for i in range(0, len(text), MAX_LINE_CHARS)] or [""]
    if line.cut:
        pieces[-1] += f" … [line of {human_bytes(line.size)} cut]"
    return pieces


def human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"
