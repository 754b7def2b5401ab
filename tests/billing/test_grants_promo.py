"""Promo codes on the wallet page, the grants list, and the grants' races on PostgreSQL (issue 15,
item 3). The root conftest checks every wallet adds up after each test."""

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from billing import locks, services
from billing.models import CreditGrant, LedgerEntry, PromoCode, PromoRedemption, Wallet
from billing.services.ledger import post_entry
from billing.templatetags.grants import grant_expiry
from tests.billing.test_concurrency import race
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
Kind = LedgerEntry.Kind
REDEEM_URL = "/billing/wallet/redeem/"


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counters live in the cache, which outlives a test (alice is pk 1 in every test)."""
    cache.clear()
    yield
    cache.clear()


def code(**fields):
    values = {"code": "WELCOME", "credits": 200, "grant_expires_days": 30, "memo": "Welcome offer"} | fields
    return PromoCode.objects.create(**values)


def test_a_code_is_redeemed_ignoring_case_into_a_promotional_grant_with_its_expiry(alice_client, alice):
    promo = code()
    with time_machine.travel(timezone.now(), tick=False):
        response = alice_client.post(REDEEM_URL, {"code": "  welcome "}, follow=True)
        grant = CreditGrant.objects.get(wallet__user=alice)
        assert grant.expires_at == timezone.now() + timedelta(days=30)
    assert response.status_code == 200
    assert "Code redeemed: 200 credits added, to use by" in response.content.decode()
    assert (grant.category, grant.source, grant.credits, grant.memo) == ("promotional", "promo_code", 200,
                                                                        "Welcome offer")
    assert PromoRedemption.objects.get().grant == grant
    promo.refresh_from_db()
    assert promo.times_redeemed == 1
    assert Wallet.objects.get(user=alice).balance == 200


@pytest.mark.parametrize(("fields", "typed", "message"), [
    ({}, "NOPE", "There is no code “NOPE”. Check the spelling and try again."),
    ({"active": False}, "welcome", "The code WELCOME is no longer active."),
    ({"valid_until": timezone.now() - timedelta(minutes=1)}, "welcome", "The code WELCOME has expired."),
    ({"max_redemptions": 0}, "welcome", "The code WELCOME has been used up."),
    ({}, "", "Enter a code."),
])
def test_a_code_that_gives_nothing_says_why_with_a_400_and_writes_nothing(alice_client, alice, fields, typed, message):
    code(**fields)
    response = alice_client.post(REDEEM_URL, {"code": typed})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not CreditGrant.objects.exists() and not PromoRedemption.objects.exists()
    assert PromoCode.objects.get().times_redeemed == 0


def test_a_code_is_redeemed_once_per_user(alice_client, alice, bob):
    code(max_redemptions=5)
    assert alice_client.post(REDEEM_URL, {"code": "WELCOME"}).status_code == 302
    response = alice_client.post(REDEEM_URL, {"code": "welcome"})
    assert response.status_code == 400
    assert "You have already redeemed the code WELCOME." in response.content.decode()
    services.redeem_promo_code(user=bob, code="Welcome")
    assert PromoCode.objects.get().times_redeemed == 2
    assert Wallet.objects.get(user=alice).balance == 200


def test_redeeming_needs_a_csrf_token(client, alice):
    code()
    client.handler.enforce_csrf_checks = True
    client.force_login(alice)
    assert client.post(REDEEM_URL, {"code": "WELCOME"}).status_code == 403
    assert not CreditGrant.objects.exists()


def test_redeeming_is_throttled_to_ten_tries_an_hour(alice_client):
    statuses = [alice_client.post(REDEEM_URL, {"code": f"GUESS{i}"}).status_code for i in range(11)]
    assert statuses == [400] * 10 + [429]


def test_the_wallet_page_lists_grants_with_what_is_left_and_their_expiry(alice_client, alice, staff):
    with time_machine.travel(timezone.now(), tick=False):
        code()
        services.redeem_promo_code(user=alice, code="welcome")
        services.grant(user=alice, credits=500, kind=Kind.PURCHASE, idempotency_key="p1", expires_at=None)
        services.credit_refund(user=alice, credits=40, actor=staff, reason="dropped call", idempotency_key="c1")
        hold = services.place_hold(user=alice, credits=50, idempotency_key="h", reference="call")
        services.settle_hold(hold=hold, used_credits=50)
        page = alice_client.get("/billing/wallet/").content.decode()
    assert "Redeem a code" in page
    rows = page.split('data-testid="grant"')[1:]
    assert len(rows) == 3
    assert "Promo code: Welcome offer" in rows[0] and "150 of 200" in rows[0] and "expires in 30 days" in rows[0]
    assert "Credits given back" in rows[1] and "40 of 40" in rows[1] and "never" in rows[1]
    assert "Bought credits" in rows[2] and "500 of 500" in rows[2] and "never" in rows[2]


def test_expiry_words():
    now = timezone.now()
    grant = CreditGrant(credits=10, remaining=10, expires_at=now + timedelta(days=12, hours=1))
    assert grant_expiry(grant, now) == "expires in 12 days"
    grant.expires_at = now + timedelta(hours=3)
    assert grant_expiry(grant, now) == "expires today"
    grant.expires_at, grant.remaining, grant.expired_at = now - timedelta(days=1), 0, now
    assert grant_expiry(grant, now) == "expired"
    assert grant_expiry(CreditGrant(credits=1, remaining=1), now) == "never"


# --- races (PostgreSQL, one connection per thread) ---------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_users_redeeming_a_one_use_code_at_once_get_it_once():
    code(max_redemptions=1)
    users = [UserFactory(), UserFactory()]
    results = race(2, lambda i: services.redeem_promo_code(user=users[i], code="welcome"))
    refused = [r for r in results if isinstance(r, services.PromoCodeRefused)]
    granted = [r for r in results if isinstance(r, CreditGrant)]
    assert (len(granted), len(refused)) == (1, 1), results
    assert refused[0].message == "The code WELCOME has been used up."
    assert PromoCode.objects.get().times_redeemed == 1
    assert PromoRedemption.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_settlement_waiting_for_the_wallet_spends_the_grant_committed_while_it_waited(alice):
    """The one-statement settlement reads the grants only once it holds the wallet's lock: a
    promotion committed while it waited is spent first (a statement's own snapshot, taken before
    the wait, would not see it and would spend the bought credits)."""
    services.grant(user=alice, credits=500, kind=Kind.PURCHASE, idempotency_key="p1")
    hold = services.place_hold(user=alice, credits=100, idempotency_key="h", reference="call")
    locked, go_on = threading.Event(), threading.Event()

    def grant_slowly() -> None:
        try:
            with transaction.atomic():
                wallet = locks.wallet_for_update(user_id=alice.pk)
                locked.set()
                go_on.wait(30)
                post_entry(wallet, credits=100, kind=Kind.BONUS, idempotency_key="b1")
        finally:
            connection.close()

    results: list = []

    def settle() -> None:
        try:
            results.append(services.settle_hold(hold=hold, used_credits=80))
        except Exception as exc:  # asserted below
            results.append(exc)
        finally:
            connection.close()

    granter = threading.Thread(target=grant_slowly)
    granter.start()
    assert locked.wait(30)
    settler = threading.Thread(target=settle)
    settler.start()
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:  # until the settlement waits for the wallet's row lock
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database() AND query LIKE '%%billing_spend_grants%%'")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the settlement never waited for the wallet")
    go_on.set()
    granter.join(30)
    settler.join(30)
    assert results and results[0].charged_credits == 80, results
    promo = CreditGrant.objects.get(entry__idempotency_key="b1")
    paid = CreditGrant.objects.get(entry__idempotency_key="p1")
    assert (promo.remaining, paid.remaining) == (20, 500)


# --- the API -----------------------------------------------------------------------------------


def test_the_api_redeems_a_code_and_lists_the_grants(alice_client, alice):
    code(credits=150, grant_expires_days=None)
    services.grant(user=alice, credits=500, kind=Kind.PURCHASE, idempotency_key="p1", expires_at=None)
    response = alice_client.post("/api/billing/promo-codes/redeem/", {"code": "welcome"}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert {k: response.json()[k] for k in ("category", "source", "credits", "remaining", "expiry")} == {
        "category": "promotional", "source": "promo_code", "credits": 150, "remaining": 150, "expiry": "never",
    }
    again = alice_client.post("/api/billing/promo-codes/redeem/", {"code": "WELCOME"}, content_type="application/json")
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "promo_code_refused"
    assert "already redeemed" in again.json()["error"]["message"]
    listed = alice_client.get("/api/billing/grants/").json()["results"]
    assert [(g["category"], g["remaining"]) for g in listed] == [("promotional", 150), ("paid", 500)]
