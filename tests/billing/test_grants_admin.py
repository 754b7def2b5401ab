"""Staff and credit grants in the admin (issue 15, item 3): "Grant credits" makes promotional
grants with an optional expiry or credit refunds; promo codes; the one row of billing settings."""

import re
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from billing import locks, services
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_editing_a_code_while_it_is_redeemed_keeps_the_redemption_counted(staff_client, alice, bob):
    """The admin's save writes the code's row: it must not write back the `times_redeemed` it read
    before a redemption committed, or a one-use code could be redeemed twice. The redemption is
    made to wait (the wallet's lock, after it has locked the code) until the admin's save waits
    for the code's row; then both go on."""
    promo = PromoCode.objects.create(code="WELCOME", credits=200, max_redemptions=1)
    wallet_locked, go_on = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def hold_the_wallet() -> None:
        try:
            with transaction.atomic():
                locks.wallet_for_update(user_id=alice.pk)
                wallet_locked.set()
                go_on.wait(30)
        finally:
            connection.close()

    def redeem() -> None:
        try:
            results["redeem"] = services.redeem_promo_code(user=alice, code="welcome")
        except Exception as exc:  # asserted below
            results["redeem"] = exc
        finally:
            connection.close()

    def edit() -> None:
        try:
            results["edit"] = staff_client.post(f"/admin/billing/promocode/{promo.pk}/change/", {
                "code": "WELCOME", "credits": "200", "max_redemptions": "1", "active": "on", "memo": "Spring",
                "redemptions-TOTAL_FORMS": "0", "redemptions-INITIAL_FORMS": "0",
            })
        except Exception as exc:  # asserted below
            results["edit"] = exc
        finally:
            connection.close()

    def wait_for_lock_wait(pattern: str) -> None:
        deadline = time.monotonic() + 30
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database() AND query LIKE %s", [pattern])
                if cursor.fetchone()[0]:
                    return
                time.sleep(0.02)
        pytest.fail(f"nothing waited for a lock in {pattern!r}")

    threads = [threading.Thread(target=hold_the_wallet)]
    threads[0].start()
    assert wallet_locked.wait(30)
    threads.append(threading.Thread(target=redeem))
    threads[-1].start()
    wait_for_lock_wait("%billing_wallet%FOR UPDATE%")  # the redemption holds the code, waits for the wallet
    threads.append(threading.Thread(target=edit))
    threads[-1].start()
    wait_for_lock_wait('UPDATE "billing_promocode"%')  # the admin read the code, waits to write it
    go_on.set()
    for thread in threads:
        thread.join(30)
    assert isinstance(results["redeem"], CreditGrant), results
    assert results["edit"].status_code == 302, results
    promo.refresh_from_db()
    assert (promo.times_redeemed, promo.memo) == (1, "Spring")
    with pytest.raises(services.PromoCodeRefused, match="used up"):
        services.redeem_promo_code(user=bob, code="welcome")
