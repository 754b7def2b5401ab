"""Admin building blocks shared by the apps."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records only code may write (ledger, imported usage): staff read, never edit.

    For any model: django-stubs makes ModelAdmin generic, but Django's class cannot be subscripted
    at run time, so its model stays implicit (Any)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _usd(amount: Decimal, places: int) -> str:
    sign = "−" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{places}f}"


def cents_column(field: str, *, description: str, currency_field: str = "currency") -> Callable[[Any], str]:
    """A list_display column for an amount in cents (minor units): "$12.00"."""
    from billing.templatetags.money import format_money

    @admin.display(description=description, ordering=field)
    def column(obj: Any) -> str:
        value = getattr(obj, field)
        currency: Any = obj
        for name in currency_field.split("."):  # "currency", or through a relation: "purchase.currency"
            currency = getattr(currency, name, None)
        return "–" if value is None else format_money(value, currency or "usd")

    return column


def microusd_column(field: str, *, description: str, places: int = 4) -> Callable[[Any], str]:
    """A list_display column for micro-dollars: "$0.0123" (staff read dollars, never µ$)."""

    @admin.display(description=description, ordering=field)
    def column(obj: Any) -> str:
        value = getattr(obj, field)
        return "–" if value is None else _usd(Decimal(value).scaleb(-6), places)

    return column


def microusd_per_mtok_column(field: str, *, description: str) -> Callable[[Any], str]:
    """A price column kept in µ$ per million tokens, read as dollars per million tokens."""

    @admin.display(description=description, ordering=field)
    def column(obj: Any) -> str:
        value = getattr(obj, field)
        return "–" if value is None else f"{_usd(Decimal(value).scaleb(-6), 2)} / 1M"

    return column
