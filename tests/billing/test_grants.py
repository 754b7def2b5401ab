"""Credit grants (issue 15, item 3): every entry that adds credits makes a grant, spending takes
them in CreditGrant's order (expires first, never-expiring last; promotional, refund, paid;
oldest), refunds and disputes take back paid credits only (the rest is debt, paid by the next
paid credits). The root conftest checks balance == ledger sum == grants remaining − debt after
each of these tests."""

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing import locks, services, tasks
from billing.models import BillingSettings, CreditGrant, CreditPack, LedgerEntry, Purchase, Wallet
from billing.services.ledger import post_entry

pytestmark = pytest.mark.django_db
Kind = LedgerEntry.Kind
Category = CreditGrant.Category


def bonus(user, credits, key, *, expires_in_days=None):
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    services.grant(user=user, credits=credits, idempotency_key=key, kind=Kind.BONUS, expires_at=expires_at)
    return CreditGrant.objects.get(entry__idempotency_key=key)


def bought(user, credits, payment_intent, *, expires_in_days=None):
    """A paid purchase credited as fulfil_checkout credits it (its entry names the purchase)."""
    pack, _ = CreditPack.objects.get_or_create(key="grants", defaults={"name": "Grants", "credits": credits,
                                                                        "price_cents": 1000})
    purchase = Purchase.objects.create(
        user=user, pack=pack, credits=credits, amount_cents=1000, currency="usd", status=Purchase.Status.PAID,
        credited_at=timezone.now(), payment_intent_id=payment_intent,
    )
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    with transaction.atomic():
        wallet = locks.wallet_for_update(user_id=user.pk)
        post_entry(wallet, credits=credits, kind=Kind.PURCHASE, idempotency_key=f"purchase:{purchase.public_id}",
                   reference=f"purchase:{purchase.public_id}", purchase=purchase, expires_at=expires_at)
    return CreditGrant.objects.get(purchase=purchase, category=Category.PAID)


def use(user, credits, key, *, hold=None):
    held = services.place_hold(user=user, credits=hold or credits, idempotency_key=f"{key}:hold", reference=key)
    return services.settle_hold(hold=held, used_credits=credits, idempotency_key=f"{key}:settle")


def remaining(*grants):
    return [CreditGrant.objects.get(pk=g.pk).remaining for g in grants]


def wallet_of(user):
    return Wallet.objects.get(user=user)


def test_every_adding_entry_makes_one_grant_of_its_kinds_category(alice, staff):
    paid = bought(alice, 1000, "pi_1")
    promo = bonus(alice, 50, "b1")
    staff_grant = services.adjust(user=alice, credits=20, actor=staff, reason="sorry", idempotency_key="a1")
    given_back = services.credit_refund(user=alice, credits=30, actor=staff, reason="bad call", idempotency_key="c1")
    assert (paid.category, paid.source, paid.credits, paid.remaining) == (Category.PAID, "purchase", 1000, 1000)
    assert (promo.category, promo.source) == (Category.PROMOTIONAL, "staff")
    assert staff_grant.grant.category == Category.PROMOTIONAL
    assert (given_back.kind, given_back.grant.category) == (Kind.CREDIT_REFUND, Category.REFUND)
    assert CreditGrant.objects.filter(wallet__user=alice).count() == 4


def test_promotional_credits_are_spent_before_paid_ones(alice):
    paid = bought(alice, 1000, "pi_1")
    promo = bonus(alice, 100, "b1")
    use(alice, 60, "call1")
    assert remaining(promo, paid) == [40, 1000]
    use(alice, 90, "call2")
    assert remaining(promo, paid) == [0, 950]


def test_the_grant_that_expires_first_is_spent_first_whatever_its_kind(alice):
    promo_never = bonus(alice, 100, "b1")
    paid_soon = bought(alice, 500, "pi_1", expires_in_days=5)
    promo_later = bonus(alice, 100, "b2", expires_in_days=30)
    use(alice, 550, "call1")
    assert remaining(paid_soon, promo_later, promo_never) == [0, 50, 100]


def test_refund_credits_come_after_promotional_and_before_paid_at_the_same_expiry(alice, staff):
    paid = bought(alice, 100, "pi_1")
    refund = services.credit_refund(user=alice, credits=100, actor=staff, reason="dropped call",
                                    idempotency_key="c1").grant
    promo = bonus(alice, 100, "b1")
    use(alice, 150, "call1")
    assert remaining(promo, refund, paid) == [0, 50, 100]


@pytest.mark.postgres
def test_the_one_statement_settlement_and_the_general_path_spend_the_same_grants(alice, bob):
    """Alice's settlement is within its hold (the one PostgreSQL statement), Bob's passes its
    hold by one credit (the general path, the overshoot collected): both use 350 credits."""
    mine = {}
    for user in (alice, bob):
        mine[user.pk] = [
            bought(user, 200, f"pi_{user.pk}_1"),
            bonus(user, 100, f"b{user.pk}1", expires_in_days=10),
            bonus(user, 100, f"b{user.pk}2"),
            bought(user, 100, f"pi_{user.pk}_2", expires_in_days=3),
        ]
    fast = use(alice, 350, "alice-call", hold=350)
    general = use(bob, 350, "bob-call", hold=349)
    assert (fast.overshoot_credits, general.overshoot_credits, general.uncollected_credits) == (0, 1, 0)
    assert remaining(*mine[alice.pk]) == [150, 0, 0, 0]
    assert remaining(*mine[bob.pk]) == [150, 0, 0, 0]
    assert wallet_of(alice).balance == wallet_of(bob).balance == 150


def refund(payment_intent, refund_id, amount, status="succeeded"):
    return services.apply_refund(refund={"id": refund_id, "payment_intent": payment_intent, "amount": amount,
                                         "status": status})


def test_a_refund_takes_back_paid_credits_only_its_own_purchase_first_and_the_rest_becomes_debt(alice):
    other = bought(alice, 1000, "pi_other")
    refunded = bought(alice, 1000, "pi_refunded")
    promo = bonus(alice, 500, "b1")
    use(alice, 1900, "call1")  # promo 500, then the paid grants oldest first: other 1000, refunded 400
    assert remaining(promo, other, refunded) == [0, 0, 600]
    refund("pi_refunded", "re_1", 1000)
    wallet = wallet_of(alice)
    assert remaining(promo, other, refunded) == [0, 0, 0]
    assert (wallet.balance, wallet.debt) == (-400, 400)


def test_a_refund_never_claws_back_promotional_credits_even_when_paid_ones_are_gone(alice):
    paid = bought(alice, 1000, "pi_1")
    use(alice, 800, "call1")
    promo = bonus(alice, 500, "b1")
    refund("pi_1", "re_1", 1000)
    wallet = wallet_of(alice)
    assert remaining(promo, paid) == [500, 0]
    assert (wallet.balance, wallet.debt) == (-300, 800)


def test_a_refund_takes_other_paid_grants_after_its_own(alice):
    first = bought(alice, 1000, "pi_1")
    second = bought(alice, 1000, "pi_2")
    promo = bonus(alice, 100, "b1")
    use(alice, 1500, "call1")  # promo 100, first 1000, second 400
    refund("pi_1", "re_1", 1000)  # its own grant is empty: second's 600, then 400 of debt
    wallet = wallet_of(alice)
    assert remaining(first, second, promo) == [0, 0, 0]
    assert (wallet.balance, wallet.debt) == (-400, 400)


def test_debt_is_paid_by_the_next_purchase_before_it_can_be_spent(alice):
    bought(alice, 1000, "pi_1")
    use(alice, 700, "call1")
    refund("pi_1", "re_1", 1000)
    assert (wallet_of(alice).balance, wallet_of(alice).debt) == (-700, 700)
    promo = bonus(alice, 100, "b1")  # promotional credits pay no debt
    assert (wallet_of(alice).debt, remaining(promo)) == (700, [100])
    next_one = bought(alice, 1000, "pi_2")
    wallet = wallet_of(alice)
    assert (next_one.credits, next_one.remaining) == (1000, 300)
    assert (wallet.balance, wallet.debt) == (400, 0)


def test_a_failed_refund_gives_back_paid_credits_with_the_purchases_expiry(alice):
    paid = bought(alice, 1000, "pi_1", expires_in_days=30)
    refund("pi_1", "re_1", 500)
    assert remaining(paid) == [500]
    refund("pi_1", "re_1", 500, status="failed")
    back = CreditGrant.objects.get(entry__kind=Kind.REFUND_REVERSAL)
    assert (back.category, back.source, back.remaining, back.purchase_id) == (Category.PAID, "refund_reversal", 500,
                                                                            paid.purchase_id)
    assert back.expires_at == paid.expires_at


def dispute(payment_intent, dispute_id, amount, status="needs_response"):
    return services.apply_dispute(dispute={"id": dispute_id, "payment_intent": payment_intent, "amount": amount,
                                           "status": status})


def test_a_dispute_takes_back_paid_credits_only_and_a_won_dispute_gives_them_back(alice):
    paid = bought(alice, 1000, "pi_1")
    promo = bonus(alice, 300, "b1")
    use(alice, 500, "call1")  # promo 300, paid 200
    dispute("pi_1", "dp_1", 1000)
    wallet = wallet_of(alice)
    assert remaining(promo, paid) == [0, 0]
    assert (wallet.balance, wallet.debt, wallet.open_disputes) == (-200, 200, 1)
    dispute("pi_1", "dp_1", 1000, status="won")
    wallet = wallet_of(alice)
    back = CreditGrant.objects.get(entry__kind=Kind.DISPUTE_WON)
    assert (back.category, back.credits, back.remaining) == (Category.PAID, 1000, 800)
    assert (wallet.balance, wallet.debt, wallet.open_disputes) == (800, 0, 0)


def test_a_staff_removal_spends_in_spending_order(alice, staff):
    paid = bought(alice, 100, "pi_1")
    promo = bonus(alice, 100, "b1")
    services.adjust(user=alice, credits=-150, actor=staff, reason="duplicate grant", idempotency_key="a1")
    assert remaining(promo, paid) == [0, 50]


# --- expiry ------------------------------------------------------------------------------------


def test_expiry_is_a_ledger_entry_made_by_the_scheduled_job(alice):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        promo = bonus(alice, 100, "b1", expires_in_days=10)
        paid = bought(alice, 500, "pi_1")
        use(alice, 30, "call1")  # from the expiring promotion first
        assert tasks.expire_credit_grants.delay().get() == 0  # nothing is due yet
        traveller.shift(timedelta(days=10, seconds=1))
        assert tasks.expire_credit_grants.delay().get() == 1
        assert tasks.expire_credit_grants.delay().get() == 0  # a rerun writes nothing
    entry = LedgerEntry.objects.get(kind=Kind.EXPIRY)
    expired = CreditGrant.objects.get(pk=promo.pk)
    assert (entry.credits, entry.idempotency_key, entry.balance_after) == (-70, f"expiry:grant:{promo.pk}", 500)
    assert (expired.remaining, expired.expired_at) == (0, entry.created_at)
    assert entry.explain() == "70 credits expired: Staff grant credits expired"
    assert remaining(paid) == [500]


def test_expiry_keeps_what_active_holds_need_and_expires_the_rest_once_they_settle(alice):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        promo = bonus(alice, 100, "b1", expires_in_days=1)
        bought(alice, 50, "pi_1")
        hold = services.place_hold(user=alice, credits=120, idempotency_key="call:hold", reference="call")
        traveller.shift(timedelta(days=2))
        assert services.expire_due_grants() == 1  # balance 150 − held 120: 30 may go now
        wallet = wallet_of(alice)
        assert (wallet.balance, wallet.held, remaining(promo)) == (120, 120, [70])
        assert LedgerEntry.objects.get(kind=Kind.EXPIRY).idempotency_key == f"expiry:grant:{promo.pk}:part:100"
        services.settle_hold(hold=hold, used_credits=40)  # spends the expiring grant first
        assert remaining(promo) == [30]
        assert services.expire_due_grants() == 1
    assert remaining(promo) == [0]
    assert CreditGrant.objects.get(pk=promo.pk).expired_at is not None
    assert wallet_of(alice).balance == 50


def test_bought_credits_expire_after_the_days_staff_set(alice):
    BillingSettings.objects.update_or_create(pk=1, defaults={"paid_credits_expire_days": 365})
    with time_machine.travel(timezone.now(), tick=False):
        paid = bought_by_default(alice)
        assert paid.expires_at == timezone.now() + timedelta(days=365)


def bought_by_default(user):
    """A purchase whose entry leaves the expiry to BillingSettings (as fulfil_checkout does)."""
    pack, _ = CreditPack.objects.get_or_create(key="grants", defaults={"name": "Grants", "credits": 100,
                                                                        "price_cents": 1000})
    purchase = Purchase.objects.create(user=user, pack=pack, credits=100, amount_cents=1000, currency="usd",
                                       status=Purchase.Status.PAID, credited_at=timezone.now())
    with transaction.atomic():
        wallet = locks.wallet_for_update(user_id=user.pk)
        post_entry(wallet, credits=100, kind=Kind.PURCHASE, idempotency_key=f"purchase:{purchase.public_id}",
                   purchase=purchase)
    return CreditGrant.objects.get(purchase=purchase)


# --- the sign-up bonus -------------------------------------------------------------------------


def test_the_signup_bonus_is_granted_once_on_sign_up(client, password, django_capture_on_commit_callbacks):
    BillingSettings.objects.update_or_create(pk=1, defaults={"signup_bonus_credits": 250,
                                                             "signup_bonus_expires_days": 30})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/signup/", {"email": "carol@example.com", "password1": password,
                                                     "password2": password})
    assert response.status_code == 302
    user = User.objects.get(email="carol@example.com")
    grant = CreditGrant.objects.get(wallet__user=user)
    assert (grant.category, grant.source, grant.credits) == (Category.PROMOTIONAL, "signup_bonus", 250)
    assert grant.entry.idempotency_key == f"signup_bonus:{user.pk}"
    assert abs(grant.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    services.grant_signup_bonus(user=user)  # again: nothing more
    assert wallet_of(user).balance == 250


def test_no_signup_bonus_when_staff_set_none(alice):
    assert services.grant_signup_bonus(user=alice) is None
    assert not CreditGrant.objects.exists()
