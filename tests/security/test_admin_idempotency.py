"""Money-moving writes honour their idempotency key: `adjust` needs one (it no longer invents a
timestamp key), and the admin's adjust form carries a one-time token used as that key, so a
double submit adjusts once."""

import re

import pytest

from billing import services
from billing.exceptions import InvalidAmount
from billing.models import LedgerEntry, Wallet
from tests.factories import fund

pytestmark = pytest.mark.django_db


def test_adjust_without_an_idempotency_key_is_refused_and_writes_nothing(alice, staff):
    fund(alice, 100)
    with pytest.raises(InvalidAmount, match="idempotency key"):
        services.adjust(user=alice, credits=5, actor=staff, reason="goodwill", idempotency_key="")
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUSTMENT).count() == 0


def test_adjust_with_the_same_key_twice_adjusts_once(alice, staff):
    fund(alice, 100)
    for _ in range(2):
        services.adjust(user=alice, credits=-7, actor=staff, reason="typo", idempotency_key="ticket-42")
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUSTMENT).count() == 1
    assert Wallet.objects.get(user=alice).balance == 93


def _adjust_form(staff_client, wallet: Wallet) -> str:
    page = staff_client.post(
        "/admin/billing/wallet/", {"action": "adjust_credits", "_selected_action": [wallet.pk]}
    ).content.decode()
    match = re.search(r'name="form_token" value="([^"]+)"', page)
    assert match, "the adjust form carries a one-time token"
    return match.group(1)


def test_submitting_the_admin_adjust_form_twice_adjusts_once(staff_client, alice):
    fund(alice, 100)
    wallet = Wallet.objects.get(user=alice)
    token = _adjust_form(staff_client, wallet)
    submit = {"action": "adjust_credits", "_selected_action": [wallet.pk], "apply": "1",
              "credits": "25", "reason": "goodwill after an outage", "form_token": token}
    first = staff_client.post("/admin/billing/wallet/", submit)
    second = staff_client.post("/admin/billing/wallet/", submit)
    assert first.status_code == second.status_code == 302
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUSTMENT).count() == 1
    assert Wallet.objects.get(user=alice).balance == 125


def test_two_separately_opened_adjust_forms_adjust_twice(staff_client, alice):
    fund(alice, 100)
    wallet = Wallet.objects.get(user=alice)
    for _ in range(2):
        token = _adjust_form(staff_client, wallet)
        staff_client.post("/admin/billing/wallet/", {
            "action": "adjust_credits", "_selected_action": [wallet.pk], "apply": "1",
            "credits": "25", "reason": "goodwill", "form_token": token,
        })
    assert Wallet.objects.get(user=alice).balance == 150


def test_a_submit_without_the_token_adjusts_nothing(staff_client, alice):
    fund(alice, 100)
    wallet = Wallet.objects.get(user=alice)
    staff_client.post("/admin/billing/wallet/", {
        "action": "adjust_credits", "_selected_action": [wallet.pk], "apply": "1", "credits": "25", "reason": "x",
    })
    assert Wallet.objects.get(user=alice).balance == 100
