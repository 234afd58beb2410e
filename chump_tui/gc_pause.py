"""Pausing the cyclic garbage collector while start-up builds long-lived objects.

Parsing a backlog and importing Textual allocate hundreds of thousands of objects
that live as long as the process and hold no garbage cycles. With the collector on,
each allocation burst triggers full collections that walk all of them again; on the
543-gap backlog that was 20-80 ms of start-up (see bench/). Pausing it and then
freezing what start-up built (``gc.freeze``) keeps later collections off those
objects too.

A live console also collects the oldest generation less often than Python does by
default (``for_a_live_screen``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collector off for the block; restored to what it was (nesting is safe)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def pause_for_startup() -> None:
    """Collector off until ``startup_done``: for front ends whose start-up spans modules."""
    gc.disable()


def startup_done() -> None:
    """Freeze what start-up built and turn the collector back on."""
    gc.freeze()
    gc.enable()


FULL_COLLECTION_EVERY = 30
"""Middle-generation collections per full one (Python's default is 10). Measured in the
continuous-mode soak (90 s each, key -> redraw p95 / p99 / max): 10 gave 138 / 206 / 258 ms,
30 gave 110 / 128 / 178, 100 gave 124 / 197 / 276 (rarer, but each 270 ms long: Textual's
drawn lines are garbage cycles, and a full collection frees what piled up)."""


def for_a_live_screen() -> None:
    """Full collections a third as often, for a front end that redraws while people type.

    A full collection holds every thread while it walks every live object and frees the
    garbage cycles that piled up (45-95 ms measured in the continuous-mode soak). At
    Python's default that is about one a second under load, and one key press in twenty
    waited behind one. Young garbage cycles are still collected as often as before.
    """
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
