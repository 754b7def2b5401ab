"""Row locks for billing, always taken in this order inside a transaction:
purchase → wallet → hold (a promo code's row, locked by billing.services.promos, comes before the
wallet). Each returns the locked row (evaluated immediately)."""

from billing.models import Hold, Purchase, StripeEvent, Wallet


def wallet_for_update(*, user_id: int) -> Wallet:
    try:
        return Wallet.objects.select_for_update().get(user_id=user_id)
    except Wallet.DoesNotExist:
        # Wallets are created lazily; a lock needs a row (get_or_create survives a racing insert).
        Wallet.objects.get_or_create(user_id=user_id)
        return Wallet.objects.select_for_update().get(user_id=user_id)


def wallet_by_pk_for_update(*, wallet_id: int) -> Wallet:
    return Wallet.objects.select_for_update().get(pk=wallet_id)


def hold_for_update(*, hold_id: int) -> Hold:
    return Hold.objects.select_for_update().get(pk=hold_id)


def purchase_for_update(*, purchase_id: int) -> Purchase:
    return Purchase.objects.select_for_update().get(pk=purchase_id)


def event_for_update(*, event_pk: int) -> StripeEvent:
    return StripeEvent.objects.select_for_update().get(pk=event_pk)
