"""Credit grants in the customer's words, for the wallet page.

    {% load grants %}
    {{ grant|grant_kind }}     → "Sign-up bonus", "Bought credits", "Credits given back", …
    {{ grant|grant_expiry }}   → "expires in 12 days", "expires today", "expired", "never"
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from billing.models import CreditGrant

register = template.Library()

Source = CreditGrant.Source

_KIND_WORDS = {
    Source.PURCHASE: "Bought credits",
    Source.TOP_UP: "Auto top-up",
    Source.SIGNUP_BONUS: "Sign-up bonus",
    Source.PROMO_CODE: "Promo code",
    Source.STAFF: "Bonus from our team",
    Source.REFUND_REVERSAL: "Bought credits given back after a failed refund",
    Source.DISPUTE_WON: "Bought credits given back after a dispute",
    Source.OPENING: "Credits from before",
}


@register.filter
def grant_kind(grant: CreditGrant) -> str:
    """What the credits are, as the customer knows them (a staff credit refund is "Credits given
    back"; a promo code names itself)."""
    if grant.category == CreditGrant.Category.REFUND:
        return "Credits given back"
    words = _KIND_WORDS.get(Source(grant.source), grant.get_source_display())
    if grant.source == Source.PROMO_CODE and grant.memo:
        return f"{words}: {grant.memo}"
    return words


@register.filter
def grant_expiry(grant: CreditGrant, now: datetime | None = None) -> str:
    """When the grant's credits expire, in days from now ("never" when they do not)."""
    if grant.expired_at is not None:
        return "expired"
    if grant.expires_at is None:
        return "never"
    now = now or timezone.now()
    if grant.expires_at <= now:
        return "expired" if grant.remaining == 0 else "expiring now"
    days = (grant.expires_at - now).days
    if days == 0:
        return "expires today"
    return f"expires in {days} day{'s' if days != 1 else ''}"
