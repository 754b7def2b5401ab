from django.conf import settings
from django.http import HttpRequest

from billing.models import Wallet


def live_push() -> str:
    """"shared" when pushes reach every process's browsers (a Redis channel layer), else "local":
    a call settled by the supervisor or a purchase fulfilled by a worker then pushes nowhere the
    page listens, so static/js/live.js polls the wallet instead."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return "local" if backend.endswith("InMemoryChannelLayer") or not backend else "shared"


def wallet(request: HttpRequest) -> dict[str, int | str | None]:
    """`nav_balance`: the signed-in user's available credits (None when signed out); `live_push`:
    how the page's figures stay true (`live_push()`)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_balance": None, "live_push": ""}
    found = Wallet.objects.filter(user_id=user.pk).only("balance", "held", "open_disputes").first()
    return {"nav_balance": found.available if found else 0, "live_push": live_push()}
