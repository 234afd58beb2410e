"""The one error type the core lets escape to a front end.

Front ends print ``str(err)`` as a single line and exit non-zero; nothing in
the core should surface a traceback for bad input.
"""

from __future__ import annotations


class ChumpError(Exception):
    """A problem the user can act on, phrased as one line."""


class BacklogError(ChumpError):
    """The backlog file or directory cannot be used."""


class DispatchError(ChumpError):
    """One dispatch step failed; later steps were not run."""
