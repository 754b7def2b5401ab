"""Billing's reads of a hold for the apps that keep its id or key (sessions): get_hold, hold_by_key and
hold_settlement."""

import pytest

from billing import services
from billing.models import Hold, LedgerEntry


@pytest.fixture
def hold(alice) -> Hold:
    services.grant(user=alice, credits=350, idempotency_key="fund", kind=LedgerEntry.Kind.BONUS)
    return services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="call:1")


def test_an_active_hold_has_no_settlement_yet(hold):
    assert services.get_hold(hold_id=hold.pk) == hold
    assert services.hold_settlement(hold_id=hold.pk) is None


def test_a_settled_hold_reads_as_settle_hold_answered(hold):
    settled = services.settle_hold(hold=services.get_hold(hold_id=hold.pk), used_credits=400)
    read = services.hold_settlement(hold_id=hold.pk)
    assert read == settled
    assert (read.charged_credits, read.released_credits, read.overshoot_credits, read.uncollected_credits) == (
        300, 0, 100, 50
    )
    assert read.entry.credits == -350


def test_a_released_hold_charged_nothing_and_released_everything(hold):
    services.release_hold(hold=services.get_hold(hold_id=hold.pk))
    read = services.hold_settlement(hold_id=hold.pk)
    assert (read.charged_credits, read.released_credits, read.overshoot_credits, read.uncollected_credits) == (
        0, 300, 0, 0
    )
    assert read.entry is None


def test_no_such_hold(db):
    assert services.hold_settlement(hold_id=987_654) is None
    with pytest.raises(Hold.DoesNotExist):
        services.get_hold(hold_id=987_654)


def test_a_hold_is_found_by_the_key_it_was_placed_under(hold):
    assert services.hold_by_key(idempotency_key="h1") == hold
    assert services.hold_by_key(idempotency_key="h2") is None
