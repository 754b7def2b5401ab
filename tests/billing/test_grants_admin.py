"""Staff and credit grants in the admin (issue 15, item 3): "Grant credits" makes promotional
grants with an optional expiry or credit refunds; promo codes; the one row of billing settings."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from billing.models import BillingSettings, CreditGrant, LedgerEntry, PromoCode

pytestmark = pytest.mark.django_db


def form_token(html: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, "no token in the form"
    return match.group(1)


def grant_form(staff_client, user, **data):
    url = f"/admin/accounts/user/{user.pk}/grant-credits/"
    token = form_token(staff_client.get(url).content.decode())
    return staff_client.post(url, {"reason": "Outage on Monday", "token": token, "apply": "1", **data})


def test_a_staff_grant_is_promotional_and_expires_when_staff_say(staff_client, alice):
    with time_machine.travel(timezone.now(), tick=False):
        assert grant_form(staff_client, alice, credits="100", kind="promotional",
                          expires_in_days="14").status_code == 302
        grant = CreditGrant.objects.get(wallet__user=alice)
        assert grant.expires_at == timezone.now() + timedelta(days=14)
    assert (grant.category, grant.source, grant.credits, grant.entry.kind) == ("promotional", "staff", 100,
                                                                              "adjustment")


def test_a_credit_refund_from_the_admin_is_a_refund_grant(staff_client, alice):
    assert grant_form(staff_client, alice, credits="30", kind="credit_refund").status_code == 302
    grant = CreditGrant.objects.get(wallet__user=alice)
    assert (grant.category, grant.expires_at, grant.entry.kind, grant.entry.actor.email) == (
        "refund", None, LedgerEntry.Kind.CREDIT_REFUND, "staff@example.com",
    )
    assert grant.entry.explain() == "30 credits given back"


def test_staff_make_promo_codes_stored_upper_case_and_unique_ignoring_case(staff_client):
    data = {"code": " spring25 ", "credits": "500", "grant_expires_days": "60", "active": "on", "memo": "Spring",
            "redemptions-TOTAL_FORMS": "0", "redemptions-INITIAL_FORMS": "0"}
    assert staff_client.post("/admin/billing/promocode/add/", data).status_code == 302
    assert PromoCode.objects.get().code == "SPRING25"
    again = staff_client.post("/admin/billing/promocode/add/", {**data, "code": "Spring25"})
    assert again.status_code == 200
    assert "There is already a code SPRING25" in again.content.decode()


def test_billing_settings_are_one_row_edited_in_the_admin(staff_client):
    listing = staff_client.get("/admin/billing/billingsettings/")
    assert listing.status_code == 302
    assert listing["Location"] == "/admin/billing/billingsettings/1/change/"
    response = staff_client.post("/admin/billing/billingsettings/1/change/", {
        "signup_bonus_credits": "300", "signup_bonus_expires_days": "30", "paid_credits_expire_days": "",
    })
    assert response.status_code == 302
    settings_row = BillingSettings.load()
    assert (settings_row.signup_bonus_credits, settings_row.signup_bonus_expires_days,
            settings_row.paid_credits_expire_days) == (300, 30, None)
    assert staff_client.get("/admin/billing/billingsettings/add/").status_code == 403


def test_grants_are_listed_read_only(staff_client, alice):
    grant_form(staff_client, alice, credits="100")
    assert staff_client.get("/admin/billing/creditgrant/").status_code == 200
    grant = CreditGrant.objects.get()
    assert staff_client.get(f"/admin/billing/creditgrant/{grant.pk}/change/").status_code == 200
    assert staff_client.post(f"/admin/billing/creditgrant/{grant.pk}/change/", {"remaining": "1"}).status_code == 403
