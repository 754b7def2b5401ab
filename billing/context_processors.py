from django.http import HttpRequest

from billing.models import Wallet


def wallet(request: HttpRequest) -> dict[str, int | None]:
    """`nav_balance`: the signed-in user's available credits (None when signed out)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_balance": None}
    found = Wallet.objects.filter(user_id=user.pk).only("balance", "held", "open_disputes").first()
    return {"nav_balance": found.available if found else 0}
