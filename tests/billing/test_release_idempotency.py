"""`release_hold` keeps its idempotency key (issue 13): a replay with the same key is a no-op that
returns the same hold; a release under another key of a hold already released is refused."""

import pytest

from billing import services
from billing.exceptions import HoldAlreadyFinal, IdempotencyConflict
from billing.models import Hold, LedgerEntry, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def hold(alice) -> Hold:
    services.grant(user=alice, credits=1000, idempotency_key="fund", kind=LedgerEntry.Kind.BONUS)
    return services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")


def test_a_replayed_release_returns_the_same_hold_and_writes_nothing(alice, hold):
    first = services.release_hold(hold=hold, idempotency_key="release-1")
    replay = services.release_hold(hold=hold, idempotency_key="release-1")
    assert replay.pk == first.pk
    assert (replay.status, replay.released_credits, replay.finished_at) == (
        Hold.Status.RELEASED, 300, first.finished_at,
    )
    wallet = Wallet.objects.get(user=alice)
    assert (wallet.balance, wallet.held) == (1000, 0)


def test_a_release_under_another_key_of_a_released_hold_is_refused(alice, hold):
    services.release_hold(hold=hold, idempotency_key="release-1")
    with pytest.raises(HoldAlreadyFinal) as refused:
        services.release_hold(hold=hold, idempotency_key="release-2")
    assert refused.value.status == Hold.Status.RELEASED
    assert Hold.objects.get(pk=hold.pk).finished_at is not None
    wallet = Wallet.objects.get(user=alice)
    assert (wallet.balance, wallet.held) == (1000, 0)


def test_a_release_key_names_one_hold(alice, hold):
    other = services.place_hold(user=alice, credits=200, idempotency_key="h2", reference="session:2")
    services.release_hold(hold=hold, idempotency_key="release-1")
    with pytest.raises(IdempotencyConflict):
        services.release_hold(hold=other, idempotency_key="release-1")
    assert Hold.objects.get(pk=other.pk).status == Hold.Status.ACTIVE
    assert Wallet.objects.get(user=alice).held == 200


def test_a_release_without_a_key_is_idempotent_under_its_default_key(alice, hold):
    services.release_hold(hold=hold)
    again = services.release_hold(hold=hold)
    assert again.status == Hold.Status.RELEASED
    with pytest.raises(HoldAlreadyFinal):
        services.release_hold(hold=hold, idempotency_key="release-2")
