"""What an attempt cost: the harness's own figure, else an estimate from its tokens.

claude and opencode report dollars (claude only in its final ``result``: a killed agent
never says); codex and gemini report tokens only. Where a run reports no dollars and its
model is one whose list price is known here, the cost is estimated from its tokens and
always shown as an estimate (``≈$0.0300``). Tokens read from a cache cost a tenth of
fresh ones but are counted as input here, so an estimate errs high.
"""

from __future__ import annotations

from dataclasses import dataclass

from chump_tui import numbers

# Dollars per million tokens (input, output), list prices by model-name prefix; the
# longest matching prefix wins.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0), "claude-opus": (15.0, 75.0),
    "claude-sonnet": (3.0, 15.0), "claude-3-5-haiku": (0.8, 4.0), "claude-haiku": (1.0, 5.0),
    "gpt-5-mini": (0.25, 2.0), "gpt-5": (1.25, 10.0), "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10.0), "o3": (2.0, 8.0),
    "o4-mini": (1.1, 4.4), "gemini-2.5-pro": (1.25, 10.0), "gemini-2.5-flash": (0.3, 2.5),
}


def price_of(model: str) -> tuple[float, float] | None:
    name = model.lower().rsplit("/", 1)[-1]  # "anthropic/claude-sonnet-4" -> its own name
    found = [prefix for prefix in PRICES if name.startswith(prefix)]
    return PRICES[max(found, key=len)] if found else None


@dataclass(frozen=True)
class Cost:
    """An attempt's cost: ``usd`` (None: unknown), and whether it is an estimate."""

    usd: float | None
    estimated: bool = False

    def text(self) -> str:
        if self.usd is None:
            return "-"
        return ("≈" if self.estimated else "") + numbers.dollars(self.usd)


def cost_of(reported: float | None, model: str, tokens_in: int | None,
            tokens_out: int | None) -> Cost:
    """The reported cost, else an estimate where the model's price is known."""
    if reported is not None:
        return Cost(numbers.cost(reported))
    price = price_of(model)
    if price is None or not (tokens_in or tokens_out):
        return Cost(None)
    usd = ((numbers.count(tokens_in) or 0) * price[0]
           + (numbers.count(tokens_out) or 0) * price[1]) / 1_000_000
    return Cost(numbers.cost(usd), estimated=True)
