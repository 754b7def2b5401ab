"""Per-model token prices (USD per 1M tokens), as in the reference's §7 table."""

import re
from decimal import Decimal

# Token classes in the order the Costs API line items are reported.
TOKEN_CLASSES = (
    "input_text_tokens",
    "input_cached_text_tokens",
    "output_text_tokens",
    "input_audio_tokens",
    "input_cached_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
)


def _row(text_in, text_cached, text_out, audio_in, audio_cached, audio_out, image_in, image_cached):
    values = (text_in, text_cached, text_out, audio_in, audio_cached, audio_out, image_in, image_cached)
    return {cls: Decimal(v) for cls, v in zip(TOKEN_CLASSES, values, strict=True)}


_REALTIME = _row("4.00", "0.40", "16.00", "32.00", "0.40", "64.00", "5.00", "0.50")
_REALTIME_2 = _row("4.00", "0.40", "24.00", "32.00", "0.40", "64.00", "5.00", "0.50")
_MINI = _row("0.60", "0.06", "2.40", "10.00", "0.30", "20.00", "0.80", "0.08")
# Preview models have no image input; 0 keeps the arithmetic total.
_PREVIEW = _row("5.00", "2.50", "20.00", "40.00", "2.50", "80.00", "0", "0")
_MINI_PREVIEW = _row("0.60", "0.30", "2.40", "10.00", "0.30", "20.00", "0", "0")

PRICES_PER_MILLION: dict[str, dict[str, Decimal]] = {
    "gpt-realtime": _REALTIME,
    "gpt-realtime-1.5": _REALTIME,
    "gpt-realtime-2": _REALTIME_2,
    "gpt-realtime-2.1": _REALTIME_2,
    "gpt-realtime-mini": _MINI,
    "gpt-realtime-2.1-mini": _MINI,
    "gpt-4o-realtime-preview": _PREVIEW,
    "gpt-4o-mini-realtime-preview": _MINI_PREVIEW,
}

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_family(model: str) -> str:
    """Map a model or snapshot name (``gpt-realtime-mini-2025-10-06``) to its price row.

    Unknown models are priced as ``gpt-realtime`` so that usage never silently costs nothing.
    """
    base = _SNAPSHOT.sub("", model or "")
    return base if base in PRICES_PER_MILLION else "gpt-realtime"


def prices_for(model: str) -> dict[str, Decimal]:
    return PRICES_PER_MILLION[price_family(model)]


def cost_usd(model: str, tokens: dict[str, int]) -> Decimal:
    prices = prices_for(model)
    return sum((Decimal(tokens.get(cls, 0)) * prices[cls] for cls in TOKEN_CLASSES), Decimal(0)) / Decimal(
        1_000_000
    )


def line_item(model: str, token_class: str) -> str:
    # Same shape as OpenAI's 2026 line items ("gpt-5-nano, input_tokens"); the realtime strings
    # themselves are undocumented.
    return f"{model}, {token_class}"


def price_table_json() -> dict[str, dict[str, str]]:
    return {model: {cls: str(p) for cls, p in row.items()} for model, row in PRICES_PER_MILLION.items()}
