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


class DispatchDeferred(DispatchError):
    """Not the gap's fault (the broker, a full fleet, a host in trouble): a later try may
    well succeed, so the gap waits instead of failing."""


class TakenElsewhere(DispatchError):
    """Another session (a console, upstream) holds the gap: not a failure of this one."""
