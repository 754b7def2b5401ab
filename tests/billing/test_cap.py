"""The monthly spending cap (issue 15, item 2): purchases and holds that would pass it are refused
with a message naming the cap; a call's hold is cut to what is left of it; the month is the user's
own calendar month."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.cache import cache

from billing import services
from billing.exceptions import SpendingCapExceeded
from billing.models import CreditPack, Hold, Purchase, Wallet
from billing.services import caps
from sessions.models import RealtimeCall
from tests.billing.conftest import start_purchase
from tests.factories import fund, wallet_of
from tests.sessions.factories import AssistantFactory
from tests.sessions.helpers import make_offer

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=ZoneInfo("UTC"))


def set_cap(user, cents):
    Wallet.objects.filter(user=user).update(monthly_cap_cents=cents)


def use(user, credits, key):
    """A settled call of `credits` (the usage meter)."""
    hold = services.place_hold(user=user, credits=credits, idempotency_key=f"use:{key}", reference=f"call:{key}")
    services.settle_hold(hold=hold, used_credits=credits)


@pytest.fixture
def capped_alice(alice, pack):
    """5,000 credits, a cap of $10.00 a month; the only pack on sale sells a credit for a cent."""
    CreditPack.objects.exclude(pk=pack.pk).update(active=False)
    fund(alice, 5000)
    set_cap(alice, 1000)
    return alice


def test_the_month_is_the_users_calendar_month():
    start, following = caps.month_bounds("Pacific/Auckland", datetime(2026, 12, 31, 12, 0, tzinfo=ZoneInfo("UTC")))
    # 31 December 12:00 UTC is already 1 January in Auckland.
    assert start == datetime(2027, 1, 1, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert following == datetime(2027, 2, 1, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert caps.reset_day(following) == "1 February"


@time_machine.travel(NOW, tick=False)
def test_a_hold_that_would_pass_the_cap_is_refused_naming_the_cap(capped_alice):
    use(capped_alice, 900, "a")
    with pytest.raises(SpendingCapExceeded) as refused:
        services.place_hold(user=capped_alice, credits=200, idempotency_key="h:big", reference="call:big")
    assert str(refused.value) == (
        "Your monthly spending cap of $10.00 leaves 100 credits this month, fewer than the 200 needed; "
        "it resets on 1 January, or raise the cap."
    )
    assert not Hold.objects.filter(idempotency_key="h:big").exists()
    assert wallet_of(capped_alice).held == 0
    # What is left of the cap can still be held; active holds count against it too.
    services.place_hold(user=capped_alice, credits=100, idempotency_key="h:fits", reference="call:fits")
    with pytest.raises(SpendingCapExceeded):
        services.place_hold(user=capped_alice, credits=1, idempotency_key="h:one", reference="call:one")


@time_machine.travel(NOW, tick=False)
def test_usage_of_last_month_and_wallets_without_a_cap_are_not_counted(capped_alice, bob):
    with time_machine.travel(datetime(2026, 11, 30, 22, 0, tzinfo=ZoneInfo("UTC")), tick=False):
        use(capped_alice, 900, "november")
    services.place_hold(user=capped_alice, credits=1000, idempotency_key="h:all", reference="call:all")
    # In New York it is still November 30th at 22:00 UTC: that usage is this month's there.
    services.release_hold(hold=Hold.objects.get(idempotency_key="h:all"))
    capped_alice.time_zone = "America/New_York"
    capped_alice.save(update_fields=["time_zone"])
    with time_machine.travel(datetime(2026, 12, 1, 3, 0, tzinfo=ZoneInfo("UTC")), tick=False), \
            pytest.raises(SpendingCapExceeded):
        services.place_hold(user=capped_alice, credits=101, idempotency_key="h:ny", reference="call:ny")
    fund(bob, 5000)
    services.place_hold(user=bob, credits=5000, idempotency_key="h:bob", reference="call:bob")


@time_machine.travel(NOW, tick=False)
def test_a_purchase_that_would_pass_the_cap_is_refused_before_stripe(capped_alice, pack, stripe_settings):
    Purchase.objects.create(user=capped_alice, pack=pack, credits=1000, amount_cents=600, currency="usd",
                            status=Purchase.Status.PENDING)
    with pytest.raises(SpendingCapExceeded) as refused:
        start_purchase(capped_alice)
    assert str(refused.value) == (
        "This would take your spending this month to $16.00, over your cap of $10.00; "
        "it resets on 1 January, or raise the cap."
    )
    assert Purchase.objects.count() == 1
    assert stripe_settings.events() == []  # nothing reached Stripe
    # A failed attempt charged nothing: it does not count.
    Purchase.objects.update(status=Purchase.Status.FAILED)
    assert start_purchase(capped_alice).status == Purchase.Status.PENDING


@time_machine.travel(NOW, tick=False)
def test_the_api_answers_403_with_the_cap_and_the_buy_page_says_why(capped_alice, pack, client, stripe_settings):
    set_cap(capped_alice, 999)
    client.force_login(capped_alice)
    response = client.post("/api/billing/checkout/", {"pack": "testpack"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("This would take your spending this month to $10.00, over your cap of $9.99")
    page = client.post("/billing/buy/", {"pack": "testpack"}, follow=True)
    assert "over your cap of $9.99" in page.content.decode()
    assert not Purchase.objects.exists()


@pytest.fixture
def _no_throttles():
    cache.clear()
    yield
    cache.clear()


@time_machine.travel(NOW, tick=False)
def test_a_call_gets_a_partial_hold_cut_to_the_cap_or_is_refused(
    alice_client, alice, pack, openai_settings, _no_throttles
):
    assistant = AssistantFactory()  # 423 credits for its 10 minutes at the worst case
    CreditPack.objects.exclude(pk=pack.pk).update(active=False)
    fund(alice, 5000)
    set_cap(alice, 1000)
    use(alice, 900, "a")
    offer = make_offer()
    response = alice_client.post(f"/api/calls/?assistant={assistant.pk}", data=offer, content_type="application/sdp")
    assert response.status_code == 201, response.content
    call = RealtimeCall.objects.get()
    assert (call.credits_held, call.partial_hold) == (100, True)

    set_cap(alice, 1005)  # 5 credits left after 900 used and 100 held: below the assistant's minimum
    response = alice_client.post(f"/api/calls/?assistant={assistant.pk}", data=offer, content_type="application/sdp")
    assert response.status_code == 402
    body = response.json()
    assert body["error"]["code"] == "spending_cap", body
    assert "Your monthly spending cap of $10.05 leaves 5 credits this month" in body["detail"]
    assert RealtimeCall.objects.count() == 1


@time_machine.travel(NOW, tick=False)
def test_the_talk_page_shows_what_is_left_of_the_month(capped_alice, client):
    use(capped_alice, 250, "a")
    client.force_login(capped_alice)
    page = client.get("/talk/").content.decode()
    assert "This month: $2.50 of your $10.00 cap used — $7.50 left" in page
    Wallet.objects.filter(user=capped_alice).update(monthly_cap_cents=None)
    assert 'data-testid="month-cap"' not in client.get("/talk/").content.decode()


@time_machine.travel(NOW, tick=False)
def test_a_grown_hold_stays_within_the_available_credits_and_the_cap(capped_alice):
    hold = services.place_hold(user=capped_alice, credits=100, idempotency_key="h:grow", reference="call:grow")
    assert services.extend_hold(hold_id=hold.pk, credits=5000) == 900  # the cap's $10.00: 1,000 credits
    assert services.extend_hold(hold_id=hold.pk, credits=1) == 0
    Wallet.objects.filter(user=capped_alice).update(monthly_cap_cents=None)
    assert services.extend_hold(hold_id=hold.pk, credits=10_000) == 4000  # then the balance
    hold.refresh_from_db()
    assert (hold.credits, wallet_of(capped_alice).held) == (5000, 5000)
    services.settle_hold(hold=services.get_hold(hold_id=hold.pk), used_credits=4500)
    assert (wallet_of(capped_alice).balance, wallet_of(capped_alice).held) == (500, 0)
