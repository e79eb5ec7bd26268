"""What a model call costs: a price table in USD per million tokens, with defaults and an override file.

`cost_usd(model, input_tokens, output_tokens)` returns None (not zero) for a model we have no price for, and logs one
warning naming the model, so "how much did this cost" never silently under-reports. Dated or suffixed model names
(`gpt-4o-mini-2024-07-18`) fall back to the longest known prefix. `OTEL_RAG_PRICES_FILE` (JSON:
`{"model": {"input": 0.15, "output": 0.6}}`) adds models or replaces our prices; it is read and checked once, at
start-up, with the other settings, so a bad file stops the service instead of failing a request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from otel_rag._config.settings import Settings, active_settings

__all__ = ["DEFAULT_PRICES", "Price", "cost_usd", "price_of", "reload_prices"]

_logger = logging.getLogger("otel_rag.pricing")


@dataclass(frozen=True)
class Price:
    input: float  # USD per million input tokens
    output: float = 0.0  # USD per million output tokens


# Public list prices at the time of writing; override them with OTEL_RAG_PRICES_FILE.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "o3-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "mistral-small": Price(0.20, 0.60),
    "mistral-large": Price(2.00, 6.00),
}

_lock = threading.Lock()
_prices: dict[str, Price] | None = None
_warned: set[str] = set()


def reload_prices(settings: Settings | None = None) -> dict[str, Price]:
    """The defaults with the settings' price file over them (configure() calls this; tests too)."""
    global _prices
    prices = dict(DEFAULT_PRICES)
    table = (settings or active_settings()).prices or {}
    prices.update({model: Price(input, output) for model, (input, output) in table.items()})
    with _lock:
        _prices = prices
        _warned.clear()
    return prices


def price_of(model: str) -> Price | None:
    prices = _prices if _prices is not None else reload_prices()
    if model in prices:
        return prices[model]
    candidates = [known for known in prices if model.startswith(known + "-") or model.startswith(known + ":")]
    return prices[max(candidates, key=len)] if candidates else None


def cost_usd(model: str | None, input_tokens: int | None = None, output_tokens: int | None = None) -> float | None:
    """The cost of one call, or None when the model has no price (warned once per model) or the counts are not
    numbers."""
    if not isinstance(model, str) or not model or (input_tokens is None and output_tokens is None):
        return None
    if not all(
        isinstance(n, (int, float)) and not isinstance(n, bool) for n in (input_tokens or 0, output_tokens or 0)
    ):
        return None
    price = price_of(model)
    if price is None:
        with _lock:
            first = model not in _warned
            if len(_warned) < 1000:  # model names may come from requests: the set must stay small
                _warned.add(model)
        if first:
            _logger.warning("no price for model %r: its cost is left out (set OTEL_RAG_PRICES_FILE to add it)", model)
        return None
    return ((input_tokens or 0) * price.input + (output_tokens or 0) * price.output) / 1_000_000
