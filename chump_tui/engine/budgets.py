"""Spending limits: per attempt (``--budget-usd``, ``--budget-tokens``) and for the session
(``--fleet-budget-usd``).

An attempt's spend is every run of it (follow-ups and CI repairs count): dollars as its
harness reported them, else estimated from its tokens where the model's price is known;
``--budget-tokens`` counts where no dollars are known at all. At 80 % the operator is told
(an ``Attention`` event, a note on the card); at 100 % the attempt is stopped like a
watchdog kill (``budget $X reached``) or, with ``--budget-action warn``, only told. Past
the session's budget nothing new starts: dispatch and continuous mode pause.
"""

from __future__ import annotations

from chump_tui.dispatch_record import Dispatch
from chump_tui.engine.config import EngineConfig
from chump_tui.engine.table import DispatchTable, Live, run_totals
from chump_tui.events import Attention
from chump_tui.numbers import dollars, short_count
from chump_tui.pricing import cost_of

WARN_AT = 0.8


def spend_usd(rec: Dispatch) -> float | None:
    """The attempt's dollars, reported or estimated; None when neither is known."""
    return cost_of(rec.cost_usd, rec.model, rec.tokens_in, rec.tokens_out).usd


class Budgets:
    def __init__(self, table: DispatchTable, config: EngineConfig) -> None:
        self.table = table
        self.config = config
        # The session's crossings told; an attempt's are on its row (budget_note), so a
        # resumed console does not tell them again.
        self._session_told: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.config.budget_usd or self.config.budget_tokens)

    def near(self, live: Live) -> bool:
        """Whether the agent's newest output may have taken it to 80 % or more (no table
        lock: the follower thread asks this for every chunk it reads)."""
        rec = live.record
        _turns, tokens_in, tokens_out, cost, _errors = run_totals(rec, live.output.activity())
        share, _limit = self._share_of(cost, rec.model, tokens_in, tokens_out)
        return share is not None and share >= WARN_AT

    def attempt_over(self, live: Live) -> str | None:
        """The reason to stop this attempt now, or None (caller holds the table's lock; the
        row's numbers are current). Tells the operator once at 80 % and once at 100 %."""
        rec = live.record
        share, limit = self._share(rec)
        if share is None or share < WARN_AT:
            return None
        reason = f"budget {limit} reached"
        if share < 1.0:
            if not rec.budget_note:
                self._tell(live, f"budget {int(share * 100)}% of {limit}",
                           f"{rec.key} has spent {int(share * 100)}% of its budget {limit}")
            return None
        if rec.budget_note != reason:
            self._tell(live, reason, f"{rec.key}: {reason}"
                       + ("" if self.config.budget_action == "stop"
                          else " (--budget-action warn: it goes on)"))
        return reason if self.config.budget_action == "stop" else None

    def _tell(self, live: Live, note: str, text: str) -> None:
        live.record.budget_note = note
        self.table.changed(live, "budget")
        self.table.emit(Attention("budget", live.record.key, text))

    def _share(self, rec: Dispatch) -> tuple[float | None, str]:
        """How much of its budget the attempt has spent (1.0: all), and the budget."""
        return self._share_of(rec.cost_usd, rec.model, rec.tokens_in, rec.tokens_out)

    def _share_of(self, cost: float | None, model: str, tokens_in: int | None,
                  tokens_out: int | None) -> tuple[float | None, str]:
        usd = cost_of(cost, model, tokens_in, tokens_out).usd
        if self.config.budget_usd and usd is not None:
            return usd / self.config.budget_usd, dollars(self.config.budget_usd)
        tokens = (tokens_in or 0) + (tokens_out or 0)
        if self.config.budget_tokens and tokens:
            return tokens / self.config.budget_tokens, \
                f"{short_count(self.config.budget_tokens)} tokens"
        return None, ""

    # ------------------------------------------------------------------ the session
    def fleet_spent(self) -> float:
        with self.table.lock:
            return sum(usd for usd in (spend_usd(lv.record) for lv in self.table.rows.values())
                       if usd is not None)

    def why_no_new_agent(self) -> str | None:
        """Why nothing new may start (the session's budget is spent), or None."""
        limit = self.config.fleet_budget_usd
        if not limit:
            return None
        spent = self.fleet_spent()
        if spent >= limit:
            return (f"the session's budget {dollars(limit)} is spent ({dollars(spent)}): "
                    "nothing new is dispatched")
        return None

    def check_fleet(self) -> None:
        """Tell the operator once when the session crosses 80 % and 100 % of its budget."""
        limit = self.config.fleet_budget_usd
        if not limit:
            return
        spent = self.fleet_spent()
        if spent >= limit and "reached" not in self._session_told:
            self._session_told |= {"warned", "reached"}
            self.table.emit(Attention("budget", "", f"the session's budget {dollars(limit)} "
                                      f"is spent ({dollars(spent)}): dispatch and continuous "
                                      "mode pause"))
        elif spent >= WARN_AT * limit and "warned" not in self._session_told:
            self._session_told.add("warned")
            self.table.emit(Attention("budget", "", f"the session has spent {dollars(spent)}, "
                                      f"{int(spent / limit * 100)}% of its budget "
                                      f"{dollars(limit)}"))
