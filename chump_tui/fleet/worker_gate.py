"""What a worker checks before it obeys a dispatch request: every check, before any side
effect.

A request runs an agent with full permissions on this host, so the worker decides for
itself: it must be signed by a console key this worker trusts, not expired nor claiming
to stay valid for long, for this clone's repository, for a gap id that is safe as a path
and a branch, on the base this worker was started with, with a harness this worker
allows, and for a gap its own backlog holds and would pick at that base. The first
check that fails is the refusal, said in one line; the request is then marked taken
fleet-wide (``take_request``) so a replay is refused by every worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from chump_tui.backlog import Backlog, Gap, done_ids
from chump_tui.errors import ChumpError
from chump_tui.fleet import wire
from chump_tui.fleet.identity import TrustList
from chump_tui.outside_text import one_line
from chump_tui.paths import unsafe_id_reason
from chump_tui.picker import pick_reason


@dataclass(frozen=True)
class Verdict:
    """A request the worker will run (``gap`` from its own backlog), or why not and whose
    fault (``kind``, a rejected report's ``refusal``: "" the request's, "retry" its
    timing's, "host" this host's)."""

    refusal: str | None
    gap: Gap | None = None
    kind: str = ""


class RequestGate:
    def __init__(self, origin: str, base_ref: str, harnesses: list[str], trust: TrustList,
                 backlog: Callable[[], Backlog], clock: Callable[[], float] = time.time) -> None:
        self.origin = origin
        self.base_ref = base_ref
        self.harnesses = harnesses
        self.trust = trust
        self.backlog = backlog  # the backlog at the fetched base (ChumpError if unreadable)
        self.clock = clock

    def check(self, request: wire.DispatchRequest, signer: str | None) -> Verdict:
        for refusal in (self._who(signer), self._what(request)):
            if refusal is not None:
                return Verdict(refusal)
        late = self._when(request)
        if late is not None:  # a full queue or a slow host: the console sends it again
            return Verdict(late, kind="retry")
        return self._which_gap(request)

    def _who(self, signer: str | None) -> str | None:
        if signer is None:
            return "the request is not signed (or its signature is wrong)"
        if not self.trust.trusts(signer, "console"):
            return (f"signed by {signer}, a key this worker does not trust "
                    "(--trust-console / CHUMP_FLEET_TRUST)")
        return None

    def _when(self, request: wire.DispatchRequest) -> str | None:
        if self.clock() > request.expires_at:
            return "the request expired before a worker took it"
        return None

    def _what(self, request: wire.DispatchRequest) -> str | None:
        if request.expires_at - self.clock() > wire.MAX_REQUEST_LIFETIME_S:
            return "the request claims to stay valid for more than a day"
        if wire.normalize_origin(request.origin) != wire.normalize_origin(self.origin):
            return (f"this worker serves {wire.normalize_origin(self.origin)}, "
                    f"not {one_line(wire.normalize_origin(request.origin), 200)}")
        unsafe = unsafe_id_reason(request.gap_id)
        if unsafe:
            return f"gap {one_line(repr(request.gap_id), 120)}: {unsafe}"
        if request.base_ref != self.base_ref:
            return (f"base {one_line(repr(request.base_ref), 120)} is not this worker's base "
                    f"({self.base_ref})")
        if request.harness not in self.harnesses:
            return (f"harness {one_line(repr(request.harness), 60)} is not one this worker "
                    f"runs ({', '.join(self.harnesses)})")
        return None

    def _which_gap(self, request: wire.DispatchRequest) -> Verdict:
        try:
            backlog = self.backlog()
        except ChumpError as exc:  # this host's trouble (a failing fetch), not the gap's
            return Verdict(f"cannot read this worker's backlog ({exc})", kind="host")
        matches = [g for g in backlog.gaps if g.id == request.gap_id]
        if not matches:
            return Verdict(f"gap {request.gap_id} is not in this worker's backlog "
                           f"({backlog.path} at {self.base_ref})")
        gap = matches[0]
        reason = pick_reason(gap, done_ids(backlog.gaps), backlog.by_id(), backlog.unusable)
        if reason is not None:
            return Verdict(f"gap {request.gap_id} is not pickable at {self.base_ref}: {reason}")
        return Verdict(None, gap)
