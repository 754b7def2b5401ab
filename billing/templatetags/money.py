"""How amounts read everywhere (pages and emails): one helper, locale-aware through Babel.

    {% load money %}
    {{ purchase.amount_cents|money:purchase.currency }}   → "$12.00" (en), "12,00 $US" (fr)
    {{ wallet.available|credits }}                         → "7,500"
    {{ wallet.available|credits_label }}                   → "7,500 credits" / "1 credit"

The locale is Django's active language (LANGUAGE_CODE, or the request's under LocaleMiddleware),
so a page, its e-mail and `billing.models.money` agree. Python code calls `format_money` and
`format_credits` directly.
"""

from __future__ import annotations

from decimal import Decimal

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal, get_currency_precision
from django import template
from django.conf import settings
from django.utils import translation

register = template.Library()


def current_locale() -> Locale:
    """Babel's locale for Django's active language ("en-us" → en_US); English if Babel lacks it."""
    language = translation.get_language() or settings.LANGUAGE_CODE
    try:
        return Locale.parse(translation.to_locale(language))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en_US")


def format_money(amount_cents: int, currency: str) -> str:
    """Minor units (cents) of `currency` as the reader's locale writes money: "$12.00"."""
    code = currency.upper()
    digits = get_currency_precision(code)
    amount = Decimal(int(amount_cents)).scaleb(-digits)
    return format_currency(amount, code, locale=current_locale())


def format_credits(credits: int | None) -> str:
    """A whole number of credits with the locale's grouping: "7,500"; "–" for None."""
    if credits is None:
        return "–"
    return format_decimal(int(credits), locale=current_locale())


@register.filter(name="money")
def money_filter(amount_cents: int | str | None, currency: str = "usd") -> str:
    if amount_cents is None or amount_cents == "":
        return "–"
    return format_money(int(amount_cents), str(currency or "usd"))


@register.filter(name="credits")
def credits_filter(credits: int | str | None) -> str:
    return format_credits(None if credits is None or credits == "" else int(credits))


@register.filter(name="credits_label")
def credits_label_filter(credits: int | str | None) -> str:
    """"7,500 credits", "1 credit"."""
    if credits is None or credits == "":
        return "–"
    count = int(credits)
    return f"{format_credits(count)} credit{'' if abs(count) == 1 else 's'}"


@register.filter(name="signed_credits")
def signed_credits_filter(credits: int | str | None) -> str:
    """A ledger change: "+1,000", "−4" (a real minus sign)."""
    if credits is None or credits == "":
        return "–"
    count = int(credits)
    return f"{'+' if count > 0 else '−' if count < 0 else ''}{format_credits(abs(count))}"
