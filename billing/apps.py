from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from django.http import HttpRequest

    from realtime_saas.dashboard import Panel


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from realtime_saas.dashboard import register_panel

        register_panel(wallet_panel, order=10)


def wallet_panel(request: HttpRequest) -> Panel | None:
    """Dashboard: balance, held and available credits, and the latest ledger entries."""
    if not request.user.is_authenticated:
        return None
    from billing.models import LedgerEntry, Wallet

    wallet = Wallet.objects.filter(user_id=request.user.pk).first()
    entries = list(LedgerEntry.objects.filter(wallet=wallet)[:5]) if wallet else []
    return {"template": "billing/panel.html", "wallet": wallet, "entries": entries}
