"""The ledger's hot paths on PostgreSQL: a hold and a settlement are one statement each, and they
write exactly what the general path writes (the other tests of tests/billing run through them).

Each runs in autocommit; inside a test's own transaction it takes a savepoint (SAVEPOINT and
RELEASE are two of the three statements counted here)."""

import pytest

from billing import services
from billing.exceptions import IdempotencyConflict, InsufficientCredits
from billing.models import Hold, LedgerEntry, Wallet

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def funded(alice):
    services.grant(user=alice, credits=1000, idempotency_key="fund", kind=LedgerEntry.Kind.BONUS)
    return alice


def test_a_hold_is_one_statement(funded, django_assert_num_queries):
    with django_assert_num_queries(3):
        hold = services.place_hold(user=funded, credits=300, idempotency_key="h1", reference="call:1", memo="m")
    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.credits, stored.status, stored.reference, stored.memo, stored.idempotency_key) == (
        300, Hold.Status.ACTIVE, "call:1", "m", "h1",
    )
    assert (hold.credits, hold.status, hold.created_at) == (stored.credits, stored.status, stored.created_at)
    assert Wallet.objects.get(user=funded).held == 300


def test_a_settlement_within_the_hold_is_one_statement(funded, django_assert_num_queries):
    hold = services.place_hold(user=funded, credits=300, idempotency_key="h1", reference="call:1")
    with django_assert_num_queries(3):
        settlement = services.settle_hold(hold=hold, used_credits=120, idempotency_key="s1")
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.USAGE)
    assert (entry.pk, entry.credits, entry.balance_after, entry.idempotency_key, entry.memo) == (
        settlement.entry.pk, -120, 880, "s1", "120 credits used (call:1)",
    )
    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.status, stored.charged_credits, stored.released_credits, stored.entry_id) == (
        Hold.Status.SETTLED, 120, 180, entry.pk,
    )
    assert services.hold_settlement(hold_id=hold.pk) == settlement
    wallet = Wallet.objects.get(user=funded)
    assert (wallet.balance, wallet.held) == (880, 0)


def test_a_refused_hold_writes_nothing(funded):
    with pytest.raises(InsufficientCredits):
        services.place_hold(user=funded, credits=1001, idempotency_key="h1", reference="call:1")
    assert not Hold.objects.exists()
    assert Wallet.objects.get(user=funded).held == 0


def test_a_settlement_key_used_before_is_a_conflict_and_changes_nothing(funded):
    first = services.place_hold(user=funded, credits=100, idempotency_key="h1", reference="call:1")
    services.settle_hold(hold=first, used_credits=10, idempotency_key="same")
    second = services.place_hold(user=funded, credits=100, idempotency_key="h2", reference="call:2")
    with pytest.raises(IdempotencyConflict):
        services.settle_hold(hold=second, used_credits=20, idempotency_key="same")
    assert Hold.objects.get(pk=second.pk).status == Hold.Status.ACTIVE
    wallet = Wallet.objects.get(user=funded)
    assert (wallet.balance, wallet.held) == (990, 100)
