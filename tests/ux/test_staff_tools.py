"""Staff tools in reach (issue 12, item 7): wallets from sign-up, "Grant credits" on the Users
admin, dollars in admin columns, the admin index and its branded forms."""

import re

import pytest

from accounts.models import User
from billing.models import LedgerEntry, Wallet
from tests.billing.factories import CreditPackFactory
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def form_token(html: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, "no token in the form"
    return match.group(1)


def test_a_new_user_has_a_wallet_at_once():
    user = User.objects.create_user("dora@example.com", "a long pass phrase 9")

    assert Wallet.objects.get(user=user).balance == 0


def test_grant_credits_to_one_user_from_their_page_once_under_double_submit(staff_client, alice):
    url = f"/admin/accounts/user/{alice.pk}/grant-credits/"
    change_page = staff_client.get(f"/admin/accounts/user/{alice.pk}/change/").content.decode()
    assert f'href="{url}"' in change_page

    token = form_token(staff_client.get(url).content.decode())
    data = {"credits": "250", "reason": "Sorry for the outage", "token": token, "apply": "1"}
    first = staff_client.post(url, data)
    second = staff_client.post(url, data)  # the same form submitted twice

    assert first.status_code == second.status_code == 302
    [entry] = LedgerEntry.objects.filter(wallet__user=alice)
    assert (entry.credits, entry.kind, entry.memo, entry.memo_shown_to_user) == (
        250, "adjustment", "Sorry for the outage", False
    )
    assert Wallet.objects.get(user=alice).balance == 250
    # Unticked: the user reads no reason.
    assert entry.explain() == "Staff added 250 credits"


def test_the_reason_is_shown_to_the_user_only_when_ticked(staff_client, alice):
    url = f"/admin/accounts/user/{alice.pk}/grant-credits/"
    token = form_token(staff_client.get(url).content.decode())

    staff_client.post(url, {"credits": "10", "reason": "Welcome gift", "show_reason_to_user": "on", "token": token,
                            "apply": "1"})

    entry = LedgerEntry.objects.get(wallet__user=alice)
    assert entry.explain() == "Staff added 10 credits: Welcome gift"


def test_bulk_grant_from_the_users_list_once_under_double_submit(staff_client, alice, bob):
    ids = [str(alice.pk), str(bob.pk)]
    form = staff_client.post("/admin/accounts/user/", {"action": "grant_credits", "_selected_action": ids})
    html = form.content.decode()
    assert form.status_code == 200 and "Grant credits" in html and "alice@example.com" in html

    data = {"action": "grant_credits", "_selected_action": ids, "credits": "100", "reason": "Beta testers",
            "token": form_token(html), "apply": "1"}
    staff_client.post("/admin/accounts/user/", data)
    again = staff_client.post("/admin/accounts/user/", data, follow=True)

    assert [w.balance for w in Wallet.objects.filter(user__in=[alice, bob]).order_by("user__email")] == [100, 100]
    assert LedgerEntry.objects.count() == 2
    assert "Already granted with this form, not again" in again.content.decode()


def test_a_forged_or_foreign_token_is_refused(staff_client, alice):
    url = f"/admin/accounts/user/{alice.pk}/grant-credits/"

    response = staff_client.post(url, {"credits": "10", "reason": "x", "token": "forged", "apply": "1"})

    assert response.status_code == 200
    assert "This form has expired" in response.content.decode()
    assert not LedgerEntry.objects.exists()


def test_users_cannot_reach_the_grant_form(alice_client, bob):
    response = alice_client.get(f"/admin/accounts/user/{bob.pk}/grant-credits/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_columns_show_dollars(staff_client, alice):
    from sessions.models import ModelPrice
    from tests.sessions.factories import ensure_prices

    CreditPackFactory(key="big", name="Big", credits=5000, price_cents=4500)
    ensure_prices()
    price = ModelPrice.objects.order_by("pk").first()
    assert price is not None

    packs = staff_client.get("/admin/billing/creditpack/").content.decode()
    assert "$45.00" in packs and ">4500<" not in packs
    prices = staff_client.get("/admin/realtime/modelprice/").content.decode()
    dollars = f"${price.text_in_microusd_per_mtok / 1e6:,.2f} / 1M"
    assert dollars in prices and f">{price.text_in_microusd_per_mtok}<" not in prices


def test_the_admin_index_lists_accounts_once_and_links_the_staff_pages(staff_client):
    html = staff_client.get("/admin/").content.decode()

    captions = re.findall(r"<caption>\s*<a [^>]*>([^<]+)</a>", html)
    assert len(captions) == len(set(captions)), captions
    staff_tools = html[html.index('data-testid="staff-tools"'):]
    for href in ["/staff/live-calls/", "/staff/reconciliation/", "/admin/realtime/flag/"]:
        assert f'href="{href}"' in staff_tools


def test_the_suspend_form_is_branded(staff_client, alice):
    response = staff_client.post("/admin/accounts/user/", {"action": "suspend_users", "_selected_action": [alice.pk]})

    html = response.content.decode()
    assert "realtime_saas staff" in html  # the admin's header, as on every admin page
    assert 'class="breadcrumbs"' in html and "Suspend users" in html


def test_a_user_made_before_wallets_came_with_sign_up_gets_one_from_the_migration():
    from importlib import import_module

    from django.apps import apps

    user = UserFactory()
    Wallet.objects.filter(user=user).delete()
    migration = import_module("billing.migrations.0005_wallet_for_every_user_low_balance")

    migration.create_missing_wallets(apps, None)

    assert Wallet.objects.filter(user=user).count() == 1


def test_reconciliation_days_are_dates(staff_client):
    response = staff_client.get("/staff/reconciliation/?since=2026-03-01&until=2026-03-03")

    html = response.content.decode()
    assert response.status_code == 200
    rows = re.findall(r'<td><time datetime="([0-9-]+)">([^<]+)</time></td>', html)
    assert rows == [("2026-03-01", "Sun 1 Mar 2026"), ("2026-03-02", "Mon 2 Mar 2026"), ("2026-03-03", "Tue 3 Mar 2026")]


@pytest.mark.parametrize("query, field", [("since=2026-13-45", "since"), ("until=yesterday", "until"),
                                          ("since=2026-03-05&until=2026-03-01", "since")])
def test_a_bad_reconciliation_date_is_a_form_error(staff_client, query, field):
    response = staff_client.get(f"/staff/reconciliation/?{query}")

    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-testid="errors-{field}"' in html
    assert "until the dates are fixed" in html


def test_the_wallet_adjust_form_says_whether_the_user_sees_the_reason(staff_client, alice):
    from billing.services import get_wallet

    wallet = get_wallet(alice)
    form = staff_client.post("/admin/billing/wallet/", {"action": "adjust_credits", "_selected_action": [wallet.pk]})
    html = form.content.decode()
    assert "Show the reason to the user" in html
    token = re.search(r'name="form_token" value="([^"]+)"', html).group(1)

    staff_client.post("/admin/billing/wallet/", {"action": "adjust_credits", "_selected_action": [wallet.pk],
                                                 "credits": "5", "reason": "internal note", "form_token": token,
                                                 "apply": "1"})

    entry = LedgerEntry.objects.get(wallet=wallet)
    assert entry.explain() == "Staff added 5 credits"


def test_a_purchases_refunds_read_in_its_currency(staff_client, alice):
    from billing.models import Purchase, Refund

    pack = CreditPackFactory(key="eur", name="Euro", credits=1000, price_cents=1250, currency="eur")
    purchase = Purchase.objects.create(user=alice, pack=pack, credits=1000, amount_cents=1250, currency="eur")
    Refund.objects.create(stripe_refund_id="re_1", purchase=purchase, amount_cents=725, status="succeeded")

    html = staff_client.get(f"/admin/billing/purchase/{purchase.pk}/change/").content.decode()

    assert "€7.25" in html and ">725<" not in html
