"""Numbers from outside, made usable: every count, pid, cost, time and offset that comes from
an agent's events, a saved state file, a fleet report or ``gh`` passes through here.

Each function returns a value the program can compute and print with, or None for
"unknown": NaN, infinities, booleans posing as numbers, strings of digits, values out of
their honest range (a 401-digit token count, a negative cost, -1 as a pid, a time a
thousand years away). Nothing here raises. The bounds are far beyond anything real, so a
value refused here was never a measurement.
"""

from __future__ import annotations

import math
import time

MAX_COUNT = 10**12
"""Tokens, turns, bytes, lines: a trillion is beyond any real agent's run."""

MAX_PID = 2**31 - 1
"""pid_t. Pids 0 and 1 are refused too: killpg(0) is our own group, kill(-1) is everyone."""

MIN_EXIT_CODE, MAX_EXIT_CODE = -255, 255
"""An exit status (0-255) or a signal death as Popen reports it (-N)."""

MAX_COST_USD = 1e6
"""Dollars per attempt."""

MAX_DURATION_S = 10 * 365 * 86400.0
"""A deadline, a grace period, a run's length."""

MAX_FUTURE_S = 10 * 365 * 86400.0
"""How far ahead of now a recorded time may lie (clocks of other hosts drift; not by years)."""

MAX_OFFSET = 2**50
"""A byte offset into an agent's output (a petabyte)."""

MAX_PR_NUMBER = 10**9


def _integral(value: object) -> int | None:
    """An int, or a finite float with no fraction (JSON ``12.0``); booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        # Compared as floats first: int(1e308) is exact but a 309-digit int.
        return int(value) if abs(value) <= 2.0**62 else None
    return None


def _real(value: object) -> float | None:
    """A finite float from an int or float; None for anything else (bool, str, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def int_in(value: object, low: int, high: int) -> int | None:
    number = _integral(value)
    return number if number is not None and low <= number <= high else None


def count(value: object) -> int | None:
    """Tokens, turns, calls, bytes: 0 to MAX_COUNT. A float count is cut to its whole part."""
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= MAX_COUNT:
        return int(value)
    return int_in(value, 0, MAX_COUNT)


def pid(value: object) -> int | None:
    """A process id we may look up or signal: 2 to MAX_PID."""
    return int_in(value, 2, MAX_PID)


def exit_code(value: object) -> int | None:
    return int_in(value, MIN_EXIT_CODE, MAX_EXIT_CODE)


def offset(value: object) -> int | None:
    return int_in(value, 0, MAX_OFFSET)


def pr_number(value: object) -> int | None:
    return int_in(value, 0, MAX_PR_NUMBER)


def attempt(value: object) -> int | None:
    return int_in(value, 1, 1_000_000)


def cost(value: object) -> float | None:
    """Dollars: finite, 0 to MAX_COST_USD."""
    number = _real(value)
    return number if number is not None and 0.0 <= number <= MAX_COST_USD else None


def duration(value: object) -> float | None:
    """Seconds: finite, 0 to MAX_DURATION_S."""
    number = _real(value)
    return number if number is not None and 0.0 <= number <= MAX_DURATION_S else None


def positive_duration(value: object) -> float | None:
    """A deadline or an interval: above 0, at most MAX_DURATION_S."""
    number = duration(value)
    return number if number is not None and number > 0 else None


def timestamp(value: object, now: float | None = None) -> float | None:
    """A time since the epoch: not before 1970, not more than MAX_FUTURE_S after ``now``."""
    number = _real(value)
    if number is None:
        return None
    latest = (time.time() if now is None else now) + MAX_FUTURE_S
    return number if 0.0 <= number <= latest else None


# --------------------------------------------------------------------- printing
# These take whatever a caller holds (a sum, a difference) and never raise: drawing a card
# or a summary row must not fail on a number.

def short_count(n: object) -> str:
    """``950``, ``12.3k``, ``4.1M``; ``?`` for anything that is not a usable count."""
    value = count(n)
    if value is None:
        return "?"
    if value < 1000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    if value < 1_000_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value / 1_000_000_000:.1f}G"


def dollars(amount: object) -> str:
    """``$0.0412`` or ``$3.20``; ``-`` when unknown."""
    value = cost(amount)
    if value is None:
        return "-"
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def whole_seconds(seconds: object) -> int:
    """Seconds as a whole number for display: 0 for anything unusable, capped at the
    duration bound (a deadline a thousand years away reads as ten years)."""
    number = _real(seconds)
    if number is None or number <= 0:
        return 0
    return int(min(number, MAX_DURATION_S))
