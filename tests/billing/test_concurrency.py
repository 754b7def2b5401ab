"""Races on PostgreSQL with real concurrent connections (one per thread)."""

import json
import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from billing import services
from billing.exceptions import InsufficientCredits
from billing.models import Hold, LedgerEntry, Wallet
from tests.billing.conftest import WEBHOOK_URL, sign, start_purchase

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(count: int, work) -> list:
    """Run work(i) in `count` threads released together; returns results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # collected, asserted by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_fifty_holds_racing_for_a_wallet_that_affords_ten_exactly_ten_succeed(alice):
    services.grant(user=alice, credits=1000, idempotency_key="fund", kind="bonus")
    results = race(50, lambda i: services.place_hold(
        user=alice, credits=100, idempotency_key=f"race-{i}", reference=f"session:{i}"))
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Hold": 10, "InsufficientCredits": 40}
    assert all(isinstance(r, (Hold, InsufficientCredits)) for r in results)
    wallet = Wallet.objects.get(user=alice)
    assert (wallet.balance, wallet.held) == (1000, 1000)
    assert Hold.objects.filter(status="active").count() == 10


def test_settle_racing_with_settle_debits_once(alice):
    services.grant(user=alice, credits=1000, idempotency_key="fund", kind="bonus")
    hold = services.place_hold(user=alice, credits=500, idempotency_key="h", reference="session:1")
    results = race(8, lambda i: services.settle_hold(hold=hold, used_credits=300))
    assert all(not isinstance(r, Exception) for r in results), results
    assert {r.entry.pk for r in results} == {LedgerEntry.objects.get(kind="usage").pk}
    wallet = Wallet.objects.get(user=alice)
    assert (wallet.balance, wallet.held) == (700, 0)


def test_settle_racing_with_release_finishes_the_hold_once(alice):
    services.grant(user=alice, credits=1000, idempotency_key="fund", kind="bonus")
    hold = services.place_hold(user=alice, credits=500, idempotency_key="h", reference="session:1")
    results = race(6, lambda i: services.settle_hold(hold=hold, used_credits=100) if i % 2
                   else services.release_hold(hold=hold))
    wallet = Wallet.objects.get(user=alice)
    assert wallet.held == 0
    assert wallet.balance in (900, 1000)
    assert LedgerEntry.objects.filter(kind="usage").count() == (1 if wallet.balance == 900 else 0)
    assert any(not isinstance(r, Exception) for r in results)


def test_webhook_racing_with_the_success_page_grants_once(alice, pack, stripe_settings):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = stripe_settings.events(type="checkout.session.completed")[-1]
    body = json.dumps(event)

    def work(i: int):
        if i % 2:
            return Client().post(WEBHOOK_URL, data=body, content_type="application/json",
                                 HTTP_STRIPE_SIGNATURE=sign(body, "whsec_fake")).status_code
        fulfilled = services.fulfil_checkout(session_id=purchase.checkout_session_id)
        assert fulfilled is not None
        return fulfilled.status

    results = race(8, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert Wallet.objects.get(user=alice).balance == 1000
