"""A purchase's charge in words on pages and in e-mails: `{% load invoices %}`
`{{ purchase|charge_breakdown }}` → "$10.00 + $2.00 tax" (`billing.services.invoices`)."""

from __future__ import annotations

from django import template

from billing.models import Purchase
from billing.services.invoices import charge_breakdown as _charge_breakdown

register = template.Library()


@register.filter
def charge_breakdown(purchase: Purchase) -> str:
    return _charge_breakdown(purchase)
