"""What OpenAI tokens cost: the token classes we bill, their columns, the price table, and credits.

Prices are micro-dollars per *million* tokens (``*_microusd_per_mtok``): OpenAI quotes cached
tokens at $0.06–$0.40 per million, i.e. fractions of a micro-dollar per token, which an integer per
token cannot hold.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import models


@dataclass(frozen=True)
class TokenCounts:
    """Tokens per billed class. `*_in` excludes cached tokens, which are counted in `*_cached`."""

    text_in: int = 0
    text_cached: int = 0
    text_out: int = 0
    audio_in: int = 0
    audio_cached: int = 0
    audio_out: int = 0

    CLASSES = ("text_in", "text_cached", "text_out", "audio_in", "audio_cached", "audio_out")

    @classmethod
    def from_usage(cls, usage: dict) -> "TokenCounts":
        """From a `response.done` usage block (reference §5): OpenAI's input counts include cached."""
        inp = usage.get("input_token_details") or {}
        cached = inp.get("cached_tokens_details") or {}
        out = usage.get("output_token_details") or {}
        text_cached = int(cached.get("text_tokens") or 0)
        audio_cached = int(cached.get("audio_tokens") or 0)
        return cls(
            text_in=max(int(inp.get("text_tokens") or 0) - text_cached, 0),
            text_cached=text_cached,
            text_out=int(out.get("text_tokens") or 0),
            audio_in=max(int(inp.get("audio_tokens") or 0) - audio_cached, 0),
            audio_cached=audio_cached,
            audio_out=int(out.get("audio_tokens") or 0),
        )

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.CLASSES}


class TokenColumns(models.Model):
    """The billed token classes as columns, `<class>_tokens` for each of `TokenCounts.CLASSES`: a
    call's running totals and each metered response (RealtimeCall, UsageRecord)."""

    text_in_tokens = models.PositiveBigIntegerField(default=0)
    text_cached_tokens = models.PositiveBigIntegerField(default=0)
    text_out_tokens = models.PositiveBigIntegerField(default=0)
    audio_in_tokens = models.PositiveBigIntegerField(default=0)
    audio_cached_tokens = models.PositiveBigIntegerField(default=0)
    audio_out_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def tokens(self) -> TokenCounts:
        return TokenCounts(**{name: getattr(self, f"{name}_tokens") for name in TokenCounts.CLASSES})


# A rough worst case for one minute of conversation, used only to size holds when an assistant
# sets no explicit rate: user audio ≈ 600 tokens/min, assistant audio ≈ 1,200 tokens/min
# (reference §5.1), and the whole conversation re-read as uncached input several times a minute.
WORST_CASE_TOKENS_PER_MINUTE = TokenCounts(text_in=2_000, audio_in=6_000, text_out=300, audio_out=1_200)


class ModelPrice(models.Model):
    """OpenAI's price of one model, per token class, in micro-dollars per million tokens."""

    model = models.CharField(max_length=64, unique=True)
    text_in_microusd_per_mtok = models.PositiveBigIntegerField()
    text_cached_microusd_per_mtok = models.PositiveBigIntegerField()
    text_out_microusd_per_mtok = models.PositiveBigIntegerField()
    audio_in_microusd_per_mtok = models.PositiveBigIntegerField()
    audio_cached_microusd_per_mtok = models.PositiveBigIntegerField()
    audio_out_microusd_per_mtok = models.PositiveBigIntegerField()
    source = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    def price_of(self, token_class: str) -> int:
        return getattr(self, f"{token_class}_microusd_per_mtok")

    def cost_microusd(self, tokens: TokenCounts) -> int:
        """Cost of `tokens`, rounded up to a whole micro-dollar (we never undercharge)."""
        total = sum(getattr(tokens, name) * self.price_of(name) for name in TokenCounts.CLASSES)
        return -(-total // 1_000_000)


def credits_for_cost(cost_microusd: int, *, markup_percent: int) -> int:
    """Credits for an OpenAI cost: plus the markup, at REALTIME_CREDITS_PER_USD, rounded up."""
    numerator = cost_microusd * (100 + markup_percent) * settings.REALTIME_CREDITS_PER_USD
    return -(-numerator // (100 * 1_000_000))
