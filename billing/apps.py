from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig

if TYPE_CHECKING:
    from django.http import HttpRequest

    from realtime_saas.dashboard import Panel


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_save

        from realtime_saas.dashboard import register_panel

        register_panel(wallet_panel, order=10)
        # Loaded in every process (web, worker, supervisor): the auto top-up trigger enqueues
        # through it (billing.services.crossings.enqueue_with).
        import billing.tasks  # noqa: F401
        post_save.connect(create_wallet, sender=settings.AUTH_USER_MODEL, dispatch_uid="billing.create_wallet")


def create_wallet(sender: object, instance: Any, created: bool, raw: bool = False, **kwargs: object) -> None:
    """Every user has a wallet from sign-up on, so staff can grant credits before a first purchase
    (migration 0005 made the wallets of the users that existed before)."""
    if created and not raw:
        from billing.models import Wallet

        Wallet.objects.get_or_create(user_id=instance.pk)


def wallet_panel(request: HttpRequest) -> Panel | None:
    """Dashboard: balance, held and available credits, and the latest ledger entries."""
    if not request.user.is_authenticated:
        return None
    from billing.models import LedgerEntry, Wallet

    wallet = Wallet.objects.filter(user_id=request.user.pk).first()
    entries = list(LedgerEntry.objects.filter(wallet=wallet)[:5]) if wallet else []
    return {"template": "billing/panel.html", "wallet": wallet, "entries": entries}
