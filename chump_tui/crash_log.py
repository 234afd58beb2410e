"""Where a traceback goes: ``$TMPDIR/chump-tui-crash-<pid>.log``, private to its owner.

The console's own crash and a card, a summary row or a plain-mode line that could not be
drawn each append their traceback; the last is shown as one line saying so, while
everything else goes on. Tracebacks quote outside text and local variables: they never
go to the terminal.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path


def crash_log_path() -> Path:
    return Path(tempfile.gettempdir()) / f"chump-tui-crash-{os.getpid()}.log"


def write_traceback(error: BaseException, context: str = "") -> str:
    """Write ``error``'s traceback (after a line naming ``context``); returns where, for the
    one line the operator sees ("traceback in …", or that it could not be saved)."""
    path = crash_log_path()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as fh:
            if context:
                fh.write(f"--- {context}\n")
            fh.write("".join(traceback.format_exception(error)))
    except OSError:
        return "the traceback could not be saved"
    return f"traceback in {path}"


def draw_failure(what: str, error: BaseException) -> str:
    """The one line shown in place of something that could not be drawn; the traceback is
    appended to the crash log."""
    where = write_traceback(error, f"drawing {what}")
    return f"cannot draw {what} ({type(error).__name__}); {where}"
