import pytest
from django.db import IntegrityError, transaction

from billing import services
from billing.exceptions import (
    HoldAlreadyFinal,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    WalletBlocked,
)
from billing.models import Hold, LedgerEntry, Wallet
from tests.factories import fund, wallet_of

pytestmark = pytest.mark.django_db

Kind = LedgerEntry.Kind


def test_get_wallet_creates_an_empty_wallet_once(alice):
    first = services.get_wallet(alice)
    assert services.get_wallet(alice).pk == first.pk
    assert (first.balance, first.held) == (0, 0)
    assert services.available_credits(alice) == 0


def test_grant_adds_credits_and_records_balance_after(alice):
    entry = fund(alice, 1000)
    assert (entry.credits, entry.balance_after, entry.kind) == (1000, 1000, "bonus")
    assert wallet_of(alice).balance == 1000


def test_grant_replayed_under_the_same_key_writes_nothing(alice):
    first = fund(alice, 1000, key="k1")
    again = fund(alice, 1000, key="k1")
    assert again.pk == first.pk
    assert LedgerEntry.objects.count() == 1
    assert wallet_of(alice).balance == 1000


def test_grant_key_reused_for_other_credits_is_a_conflict(alice):
    fund(alice, 1000, key="k1")
    with pytest.raises(IdempotencyConflict):
        fund(alice, 5, key="k1")
    assert wallet_of(alice).balance == 1000


def test_grant_refuses_non_positive_credits_and_clawback_kinds(alice):
    for bad in (0, -5, 1.5, True):
        with pytest.raises(InvalidAmount):
            services.grant(user=alice, credits=bad, idempotency_key="x", kind=Kind.BONUS)
    with pytest.raises(InvalidAmount):
        services.grant(user=alice, credits=5, idempotency_key="x", kind=Kind.REFUND)
    assert not LedgerEntry.objects.exists()


def test_place_hold_reserves_available_credits(alice):
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    wallet = wallet_of(alice)
    assert (wallet.balance, wallet.held, wallet.available) == (1000, 300, 700)
    assert services.available_credits(alice) == 700
    assert hold.status == Hold.Status.ACTIVE


def test_place_hold_beyond_available_raises_insufficient_credits_and_writes_nothing(alice):
    fund(alice, 1000)
    services.place_hold(user=alice, credits=800, idempotency_key="h1", reference="session:1")
    with pytest.raises(InsufficientCredits) as info:
        services.place_hold(user=alice, credits=201, idempotency_key="h2", reference="session:2")
    assert (info.value.available, info.value.required) == (200, 201)
    assert Hold.objects.count() == 1
    assert wallet_of(alice).held == 800


def test_place_hold_replayed_returns_the_first_hold(alice):
    fund(alice, 1000)
    first = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    again = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    assert again.pk == first.pk
    assert wallet_of(alice).held == 300


def test_settle_hold_debits_used_and_releases_the_rest(alice):
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    settlement = services.settle_hold(hold=hold, used_credits=120)
    assert (settlement.charged_credits, settlement.released_credits) == (120, 180)
    assert (settlement.overshoot_credits, settlement.uncollected_credits) == (0, 0)
    assert settlement.entry.credits == -120
    assert settlement.entry.kind == "usage"
    wallet = wallet_of(alice)
    assert (wallet.balance, wallet.held) == (880, 0)


def test_settle_hold_twice_debits_once_and_returns_the_first_settlement(alice):
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    first = services.settle_hold(hold=hold, used_credits=120)
    second = services.settle_hold(hold=hold, used_credits=250)
    assert second.charged_credits == 120
    assert second.entry.pk == first.entry.pk
    assert LedgerEntry.objects.filter(kind="usage").count() == 1
    assert wallet_of(alice).balance == 880


def test_settle_hold_overshoot_is_taken_from_available_only_never_below_zero(alice):
    fund(alice, 350)
    hold = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    settlement = services.settle_hold(hold=hold, used_credits=400)
    assert settlement.charged_credits == 300
    assert settlement.overshoot_credits == 100
    assert settlement.uncollected_credits == 50
    assert settlement.entry.credits == -350
    assert "50 used beyond the hold could not be collected" in settlement.entry.memo
    assert wallet_of(alice).balance == 0


def test_settle_hold_with_nothing_used_writes_no_entry(alice):
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    settlement = services.settle_hold(hold=hold, used_credits=0)
    assert settlement.entry is None
    assert settlement.released_credits == 300
    assert wallet_of(alice).held == 0
    assert LedgerEntry.objects.count() == 1


def test_release_hold_gives_everything_back_and_is_idempotent(alice):
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=300, idempotency_key="h1", reference="session:1")
    services.release_hold(hold=hold)
    released = services.release_hold(hold=hold)
    assert released.status == Hold.Status.RELEASED
    wallet = wallet_of(alice)
    assert (wallet.balance, wallet.held) == (1000, 0)


def test_settled_hold_cannot_be_released_nor_released_hold_settled(alice):
    fund(alice, 1000)
    settled = services.place_hold(user=alice, credits=100, idempotency_key="h1", reference="s:1")
    services.settle_hold(hold=settled, used_credits=10)
    with pytest.raises(HoldAlreadyFinal):
        services.release_hold(hold=settled)
    released = services.place_hold(user=alice, credits=100, idempotency_key="h2", reference="s:2")
    services.release_hold(hold=released)
    with pytest.raises(HoldAlreadyFinal):
        services.settle_hold(hold=released, used_credits=10)
    assert wallet_of(alice).balance == 990


def test_clawback_below_zero_blocks_new_holds_but_running_holds_still_settle(alice):
    fund(alice, 1000)
    running = services.place_hold(user=alice, credits=400, idempotency_key="h1", reference="session:1")
    services.clawback(user=alice, credits=1000, idempotency_key="c1", kind=Kind.REFUND, reference="purchase:x")
    wallet = wallet_of(alice)
    assert (wallet.balance, wallet.held, wallet.available) == (0, 400, 0)
    services.settle_hold(hold=running, used_credits=100)
    wallet = wallet_of(alice)
    assert (wallet.balance, wallet.held) == (-100, 0)
    with pytest.raises(WalletBlocked) as info:
        services.place_hold(user=alice, credits=1, idempotency_key="h2", reference="session:2")
    assert "-100" in info.value.reason
    assert services.available_credits(alice) == 0


def test_adjust_requires_a_reason_and_staff_and_records_the_actor(alice, staff):
    with pytest.raises(InvalidAmount):
        services.adjust(user=alice, credits=50, actor=staff, reason="  ", idempotency_key="adj:1")
    with pytest.raises(InvalidAmount):
        services.adjust(user=alice, credits=50, actor=alice, reason="because", idempotency_key="adj:1")
    entry = services.adjust(user=alice, credits=50, actor=staff, reason="goodwill after an outage",
                            idempotency_key="adj:1")
    assert (entry.kind, entry.credits, entry.actor, entry.memo) == ("adjustment", 50, staff, "goodwill after an outage")


def test_adjust_cannot_remove_held_credits(alice, staff):
    fund(alice, 100)
    services.place_hold(user=alice, credits=80, idempotency_key="h1", reference="s:1")
    with pytest.raises(InsufficientCredits):
        services.adjust(user=alice, credits=-21, actor=staff, reason="mistake", idempotency_key="adj:1")
    services.adjust(user=alice, credits=-20, actor=staff, reason="mistake", idempotency_key="adj:2")
    assert wallet_of(alice).balance == 80


def test_ledger_entries_cannot_be_updated_or_deleted_through_the_orm(alice):
    entry = fund(alice, 10)
    entry.memo = "changed"
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(pk=entry.pk).update(memo="x")
    with pytest.raises(TypeError):
        LedgerEntry.objects.all().delete()


def test_wallet_held_cannot_go_negative_in_the_database(alice):
    services.get_wallet(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(user=alice).update(held=-1)


def test_ledger_sign_must_match_its_kind_in_the_database(alice):
    wallet = services.get_wallet(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(wallet=wallet, credits=-5, kind="purchase", balance_after=-5, idempotency_key="z")


def test_balance_equals_the_sum_of_the_ledger(alice, staff):
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=500, idempotency_key="h1", reference="s:1")
    services.settle_hold(hold=hold, used_credits=321)
    services.adjust(user=alice, credits=-9, actor=staff, reason="typo", idempotency_key="adj:1")
    services.clawback(user=alice, credits=2000, idempotency_key="c", kind=Kind.DISPUTE, reference="p")
    wallet = wallet_of(alice)
    total = sum(LedgerEntry.objects.filter(wallet=wallet).values_list("credits", flat=True))
    assert wallet.balance == total == 1000 - 321 - 9 - 2000
    assert LedgerEntry.objects.filter(wallet=wallet).first().balance_after == wallet.balance


def test_balance_changes_are_pushed_to_the_user_after_commit(alice, monkeypatch, django_capture_on_commit_callbacks):
    pushed = []
    monkeypatch.setattr("realtime_saas.live.push_to_user", lambda uid, kind, data: pushed.append((uid, kind, data)))
    with django_capture_on_commit_callbacks(execute=True):
        fund(alice, 100)
        services.place_hold(user=alice, credits=30, idempotency_key="h1", reference="s:1")
    assert pushed == [
        (alice.pk, "balance", {"balance": 100, "held": 0, "available": 100}),
        (alice.pk, "balance", {"balance": 100, "held": 30, "available": 70}),
    ]


def test_a_hold_in_the_callers_transaction_commits_and_rolls_back_with_it(alice):
    fund(alice, 100)
    with transaction.atomic():
        wallet = services.lock_wallet(user=alice)
        services.hold_in_transaction(wallet=wallet, credits=30, idempotency_key="h1", reference="r")
    assert wallet_of(alice).held == 30
    with pytest.raises(RuntimeError, match="caller's row"), transaction.atomic():
        wallet = services.lock_wallet(user=alice)
        services.hold_in_transaction(wallet=wallet, credits=50, idempotency_key="h2", reference="r")
        raise RuntimeError("the caller's row could not be written")
    assert wallet_of(alice).held == 30
    assert list(Hold.objects.values_list("idempotency_key", flat=True)) == ["h1"]


def test_a_hold_in_the_callers_transaction_refuses_what_place_hold_refuses(alice):
    fund(alice, 100)
    with transaction.atomic():
        wallet = services.lock_wallet(user=alice)
        with pytest.raises(InsufficientCredits):
            services.hold_in_transaction(wallet=wallet, credits=101, idempotency_key="h1", reference="r")
    with pytest.raises(IntegrityError), transaction.atomic():
        wallet = services.lock_wallet(user=alice)
        services.hold_in_transaction(wallet=wallet, credits=10, idempotency_key="dup", reference="r")
        services.hold_in_transaction(wallet=wallet, credits=10, idempotency_key="dup", reference="r")
    assert wallet_of(alice).held == 0


@pytest.mark.django_db(transaction=True)
def test_lock_wallet_and_hold_in_transaction_need_an_open_transaction(alice):
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        services.lock_wallet(user=alice)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        services.hold_in_transaction(wallet=services.get_wallet(alice), credits=1, idempotency_key="k", reference="r")
