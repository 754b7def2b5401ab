"""Auto top-up (issue 15, item 1) against fakes/stripe as a real server: a card saved through a
setup-mode Checkout, one off-session top-up per crossing of the threshold whatever the number of
workers and retries, credits from Stripe's answer and its webhooks exactly once, an invoice for
every top-up, and declines that switch auto top-up off and email a link to pay on-session."""

import threading
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from django.core import mail
from django.db import connection

from billing import services
from billing.models import CreditGrant, CreditPack, LedgerEntry, Purchase, Wallet
from billing.services import crossings, topups
from tests.billing.conftest import post_event
from tests.factories import fund, wallet_of


def save_card(user, fake, client, card="pm_card_visa"):
    """The user saves `card` on Stripe's setup page; the webhook stores it on the wallet."""
    url = topups.start_card_setup(user=user, success_url="http://testserver/billing/auto-top-up/",
                                  cancel_url="http://testserver/billing/auto-top-up/")
    session_id = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
    if not session_id.startswith("cs_"):
        session_id = parse_qs(urlparse(url).query)["session"][0]
    fake.pay(session_id, card=card)
    [completed] = [e for e in fake.events("checkout.session.completed") if e["data"]["object"]["id"] == session_id]
    assert post_event(client, completed).status_code == 200
    return wallet_of(user)


def switch_on(user, pack, *, threshold=500, limit=3, cap_cents=None):
    return topups.update_settings(user=user, settings=topups.TopUpSettings(
        enabled=True, threshold=threshold, pack=pack, monthly_limit=limit, monthly_cap_cents=cap_cents,
        time_zone="UTC"))


def spend(user, credits, key):
    hold = services.place_hold(user=user, credits=credits, idempotency_key=f"spend:{key}", reference=f"call:{key}")
    return services.settle_hold(hold=hold, used_credits=credits)


def below_threshold(user, fake, client, pack):
    """A saved card, auto top-up on (threshold 500, `pack`) and 400 credits: below it, with no
    top-up started yet (the fields are set directly, so nothing is enqueued)."""
    save_card(user, fake, client)
    fund(user, 600)
    spend(user, 200, "a")
    Wallet.objects.filter(user=user).update(auto_topup_enabled=True, auto_topup_threshold=500, auto_topup_pack=pack)
    return wallet_of(user)


def payment_intents(fake):
    return fake.client().v1.payment_intents.list(params={"limit": 100}).data


@pytest.fixture
def topup_pack(pack):
    CreditPack.objects.exclude(pk=pack.pk).update(active=False)
    return pack


def test_saving_a_card_stores_it_and_makes_it_the_customers_default(alice, client, stripe_settings, topup_pack,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        save_card(alice, stripe_settings, client)
    wallet = wallet_of(alice)
    assert wallet.payment_method_id.startswith("pm_")
    assert (wallet.card_brand, wallet.card_last4) == ("visa", "4242")
    assert topups.card_label(wallet) == "Visa •••• 4242"
    customer = stripe_settings.get(wallet.stripe_customer_id)
    assert customer["invoice_settings"]["default_payment_method"] == wallet.payment_method_id


@pytest.mark.django_db(transaction=True)
def test_a_settlement_below_the_threshold_tops_up_exactly_once_with_racing_workers_and_a_retry(
    alice, client, stripe_settings, topup_pack
):
    save_card(alice, stripe_settings, client)
    fund(alice, 2000)
    spend(alice, 1800, "a")  # 200 available
    # Switched on behind the service's back, so that nothing has enqueued the crossing yet: two
    # workers run it at once, then the task is retried.
    Wallet.objects.filter(user=alice).update(auto_topup_enabled=True, auto_topup_threshold=500,
                                             auto_topup_pack=topup_pack)
    wallet = wallet_of(alice)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker():
        try:
            start.wait()
            topups.run_auto_top_up(wallet_id=wallet.pk, crossing=0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    topups.run_auto_top_up(wallet_id=wallet.pk, crossing=0)

    [intent] = payment_intents(stripe_settings)
    assert (intent["amount"], intent["status"], intent["customer"]) == (1000, "succeeded", wallet.stripe_customer_id)
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert intent["metadata"]["purchase_id"] == str(purchase.public_id)
    assert (purchase.status, purchase.topup_key, purchase.payment_intent_id) == (
        Purchase.Status.PAID, f"wallet:{wallet.pk}:0", intent["id"])
    assert purchase.invoice_id.startswith("in_") and purchase.invoice_url and purchase.invoice_pdf
    invoice = stripe_settings.get(purchase.invoice_id)
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 1000)
    # The webhooks of the same payment, twice, credit nothing more.
    for event in stripe_settings.events("payment_intent.succeeded") + stripe_settings.events("invoice.payment_succeeded"):
        assert post_event(client, event).status_code == 200
        assert post_event(client, event).status_code == 200
    wallet.refresh_from_db()
    assert wallet.balance == 2000 - 1800 + 1000
    assert LedgerEntry.objects.filter(wallet=wallet, reference=f"purchase:{purchase.public_id}").count() == 1
    [grant] = CreditGrant.objects.filter(purchase=purchase)
    assert (grant.source, grant.credits) == (CreditGrant.Source.TOP_UP, 1000)
    # Back above the threshold: the next crossing is armed, and buys again when it comes.
    assert wallet.auto_topup_crossing == 1
    spend(alice, 800, "b")
    assert Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP).count() == 2
    assert len(payment_intents(stripe_settings)) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("card", "code"), [
    ("pm_card_chargeCustomerFail", "card_declined"),
    ("pm_card_authenticationRequired", "authentication_required"),
])
def test_a_declined_top_up_switches_auto_top_up_off_and_emails_a_link_to_pay(
    alice, client, stripe_settings, topup_pack, card, code
):
    save_card(alice, stripe_settings, client, card=card)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500)
    mail.outbox.clear()

    spend(alice, 200, "a")

    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.failure_code) == (Purchase.Status.FAILED, code)
    wallet = wallet_of(alice)
    assert not wallet.auto_topup_enabled
    assert wallet.auto_topup_disabled_at is not None
    assert wallet.balance == 400
    assert purchase.invoice_url  # an open invoice: its hosted page takes the payment on-session
    [email] = mail.outbox
    assert email.to == [alice.email]
    assert email.subject == "Auto top-up failed and is now off"
    assert purchase.invoice_url in email.body
    assert "Auto top-up is now switched off" in email.body
    # Stripe's payment_intent.payment_failed comes too: the same path, nothing twice.
    for event in stripe_settings.events("payment_intent.payment_failed"):
        assert post_event(client, event).status_code == 200
    assert len(mail.outbox) == 1
    # The page says why it is off.
    client.force_login(alice)
    page = client.get("/billing/auto-top-up/").content.decode()
    assert wallet.auto_topup_disabled_reason in page.replace("&#x27;", "'")
    # The link works: paying the open invoice on its hosted page (another card) credits the top-up
    # after all, once (invoice.payment_succeeded, delivered twice).
    assert stripe_settings.get(purchase.invoice_id)["status"] == "open"
    paid = httpx.post(purchase.invoice_url, data={"card": "pm_card_visa"}, timeout=10)
    assert paid.status_code in (200, 303), paid.text
    assert stripe_settings.get(purchase.invoice_id)["status"] == "paid"
    [succeeded] = stripe_settings.events("invoice.payment_succeeded")
    assert post_event(client, succeeded).status_code == 200
    assert post_event(client, succeeded).status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID and purchase.payment_intent_id
    assert wallet_of(alice).balance == 1400


@pytest.mark.django_db(transaction=True)
def test_the_cap_refuses_a_top_up(alice, client, stripe_settings, topup_pack):
    save_card(alice, stripe_settings, client)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500, cap_cents=999)
    spend(alice, 200, "a")
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.failure_code) == (Purchase.Status.FAILED, "spending_cap")
    assert "over your cap of $9.99" in purchase.failure_reason
    assert payment_intents(stripe_settings) == []
    assert wallet_of(alice).balance == 400


@pytest.mark.django_db(transaction=True)
def test_the_monthly_number_of_top_ups_is_a_limit(alice, client, stripe_settings, topup_pack):
    save_card(alice, stripe_settings, client)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500, limit=1)
    spend(alice, 200, "a")  # crossing 0: bought, 1,400 credits
    spend(alice, 1000, "b")  # crossing 1: over the limit
    assert list(Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP).order_by("pk")
                .values_list("status", "failure_code")) == [("paid", ""), ("failed", "monthly_limit")]
    assert len(payment_intents(stripe_settings)) == 1


def test_the_page_validates_under_each_field(alice, client, topup_pack):
    client.force_login(alice)
    response = client.post("/billing/auto-top-up/", {
        "enabled": "on", "threshold": "0", "pack": "", "monthly_limit": "3", "monthly_cap": "", "time_zone": "Mars/Base",
    })
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-testid="errors-enabled"' in page and "Save a card first" in page
    assert 'data-testid="errors-threshold"' in page
    assert 'data-testid="errors-pack"' in page
    assert 'data-testid="errors-time_zone"' in page
    assert not Wallet.objects.filter(user=alice, auto_topup_enabled=True).exists()
    topup_pack.active = False
    topup_pack.save()
    response = client.post("/billing/auto-top-up/", {
        "threshold": "10", "pack": topup_pack.key, "monthly_limit": "3", "monthly_cap": "25.50",
        "time_zone": "Europe/Paris",
    })
    assert response.status_code == 400
    assert "Choose a pack that is on sale." in response.content.decode()


def test_the_page_saves_the_cap_and_time_zone(alice, client, topup_pack):
    client.force_login(alice)
    response = client.post("/billing/auto-top-up/", {
        "threshold": "10", "pack": topup_pack.key, "monthly_limit": "2", "monthly_cap": "25.50",
        "time_zone": "Europe/Paris",
    })
    assert response.status_code == 302
    wallet = wallet_of(alice)
    alice.refresh_from_db()
    assert (wallet.monthly_cap_cents, wallet.auto_topup_threshold, wallet.auto_topup_monthly_limit,
            wallet.auto_topup_enabled, alice.time_zone) == (2550, 10, 2, False, "Europe/Paris")
    page = client.get("/billing/auto-top-up/").content.decode()
    assert "of your $25.50 cap" in page
    assert "Save a card" in page
    assert crossings.topup_key(wallet.pk, 3) == f"wallet:{wallet.pk}:3"


@pytest.mark.django_db(transaction=True)
def test_a_network_failure_is_retried_with_the_same_idempotency_key(alice, client, stripe_settings, topup_pack):
    from billing.exceptions import StripeUnavailable

    wallet = below_threshold(alice, stripe_settings, client, topup_pack)
    # Stripe answers 500 to the PaymentIntent (and to stripe-python's own two retries).
    stripe_settings.fail_next(count=3, status=500, path="/v1/payment_intents")
    with pytest.raises(StripeUnavailable):
        topups.run_auto_top_up(wallet_id=wallet.pk, crossing=0)
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.payment_intent_id) == (Purchase.Status.PENDING, None)
    assert wallet_of(alice).auto_topup_enabled  # not a decline: nothing switched off
    # The task's retry charges the same purchase with the same key: one PaymentIntent, credited once.
    topups.run_auto_top_up(wallet_id=wallet.pk, crossing=0)
    topups.run_auto_top_up(wallet_id=wallet.pk, crossing=0)
    [intent] = payment_intents(stripe_settings)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.payment_intent_id) == (Purchase.Status.PAID, intent["id"])
    assert wallet_of(alice).balance == 1400


def test_a_pack_bought_with_save_this_card_saves_it_for_auto_top_up(alice, client, stripe_settings, topup_pack,
                                                                    deliver):
    client.force_login(alice)
    response = client.post("/billing/buy/", {"pack": topup_pack.key, "save_card": "1"})
    assert response.status_code == 302
    purchase = Purchase.objects.get()
    stripe_settings.pay(purchase.checkout_session_id, card="pm_card_visa")
    [completed] = stripe_settings.events("checkout.session.completed")
    deliver(completed)
    purchase.refresh_from_db()
    wallet = wallet_of(alice)
    assert purchase.status == Purchase.Status.PAID
    assert topups.card_label(wallet) == "Visa •••• 4242"
    intent = stripe_settings.get(purchase.payment_intent_id)
    assert intent["setup_future_usage"] == "off_session" and intent["payment_method"] == wallet.payment_method_id
    assert stripe_settings.get(wallet.stripe_customer_id)["invoice_settings"]["default_payment_method"] == (
        wallet.payment_method_id)
    # Without the box ticked, nothing is saved.
    Wallet.objects.filter(pk=wallet.pk).update(payment_method_id="", card_brand="", card_last4="")
    client.post("/billing/buy/", {"pack": topup_pack.key})
    other = Purchase.objects.exclude(pk=purchase.pk).get()
    stripe_settings.pay(other.checkout_session_id, card="pm_card_visa")
    deliver([e for e in stripe_settings.events("checkout.session.completed")
             if e["data"]["object"]["id"] == other.checkout_session_id][0])
    assert wallet_of(alice).payment_method_id == ""


def test_a_hold_grown_after_the_settler_read_it_releases_all_it_holds(alice):
    # A live call's hold grows (extend_hold) while its settler has already read it (settle_call
    # reads the hold, then settles): the settlement must release what the hold holds now, not
    # what it held when it was read, or the wallet's `held` keeps the growth for ever.
    fund(alice, 1000)
    hold = services.place_hold(user=alice, credits=100, idempotency_key="grow:a", reference="call:grow")
    read_before = services.get_hold(hold_id=hold.pk)
    assert services.extend_hold(hold_id=hold.pk, credits=400) == 400

    settlement = services.settle_hold(hold=read_before, used_credits=50)

    assert (settlement.charged_credits, settlement.released_credits) == (50, 450)
    wallet = wallet_of(alice)
    assert (wallet.balance, wallet.held) == (950, 0)


@pytest.mark.django_db(transaction=True)
def test_switching_auto_top_up_on_again_after_a_decline_tops_up_below_the_threshold(
    alice, client, stripe_settings, topup_pack
):
    # The decline's e-mail and page say: save another card, then switch it on again. The wallet is
    # still below its threshold (the crossing whose top-up failed): switched on, it tops up again.
    save_card(alice, stripe_settings, client, card="pm_card_chargeCustomerFail")
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500)
    spend(alice, 200, "a")
    assert not wallet_of(alice).auto_topup_enabled

    save_card(alice, stripe_settings, client, card="pm_card_visa")
    switch_on(alice, topup_pack, threshold=500)

    assert list(Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP).order_by("pk")
                .values_list("status", "failure_code")) == [("failed", "card_declined"), ("paid", "")]
    assert wallet_of(alice).balance == 400 + 1000
    assert wallet_of(alice).auto_topup_enabled


@pytest.mark.django_db(transaction=True)
def test_raising_the_cap_after_a_refused_top_up_tops_up_below_the_threshold(
    alice, client, stripe_settings, topup_pack
):
    save_card(alice, stripe_settings, client)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500, cap_cents=999)
    spend(alice, 200, "a")  # refused: the cap
    switch_on(alice, topup_pack, threshold=500, cap_cents=5000)
    assert list(Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP).order_by("pk")
                .values_list("status", "failure_code")) == [("failed", "spending_cap"), ("paid", "")]
    assert len(payment_intents(stripe_settings)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("taxed", [False, True], ids=["untaxed", "taxed"])
def test_a_paid_top_up_never_leaves_a_payable_invoice_when_attaching_its_payment_fails(
        alice, client, stripe_settings, topup_pack, settings, taxed):
    """The top-up is paid and credited, but Stripe fails the attach_payment that would mark its
    invoice paid: the invoice must not stay open, or the user can pay it a second time from its
    hosted page (and get nothing: the purchase is credited already)."""
    settings.STRIPE_AUTOMATIC_TAX = taxed
    below_threshold(alice, stripe_settings, client, topup_pack)
    # Stripe answers 500 to the attach (and to stripe-python's own two retries).
    stripe_settings.fail_next(count=3, status=500, path="/v1/invoices/*/attach_payment")
    topups.run_auto_top_up(wallet_id=wallet_of(alice).pk, crossing=0)
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert purchase.status == Purchase.Status.PAID
    assert wallet_of(alice).balance == 400 + topup_pack.credits
    invoice = stripe_settings.client().v1.invoices.retrieve(purchase.invoice_id)
    assert invoice.status != "open", "a credited top-up's invoice is still open and payable"
    [intent] = payment_intents(stripe_settings)
    assert intent.status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_paid_top_up_whose_invoice_cannot_be_closed_at_all_shows_no_link_to_pay_it(
        alice, client, stripe_settings, topup_pack):
    below_threshold(alice, stripe_settings, client, topup_pack)
    # Attach, mark paid out of band (POST …/pay) and void all fail, each with stripe-python's retries.
    stripe_settings.fail_next(count=3, status=500, path="/v1/invoices/*/attach_payment")
    stripe_settings.fail_next(count=3, status=500, path="/v1/invoices/*/pay")
    stripe_settings.fail_next(count=3, status=500, path="/v1/invoices/*/void")
    topups.run_auto_top_up(wallet_id=wallet_of(alice).pk, crossing=0)
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert purchase.status == Purchase.Status.PAID
    assert purchase.invoice_id and (purchase.invoice_url, purchase.invoice_pdf) == ("", "")
    client.force_login(alice)
    page = client.get("/billing/purchases/").content.decode()
    assert "/i/" not in page  # the fake's hosted invoice pages live under /i/<id>


@pytest.mark.django_db(transaction=True)
def test_a_top_up_waiting_for_its_retry_is_not_charged_once_auto_top_up_is_switched_off(
        alice, client, stripe_settings, topup_pack):
    from billing.exceptions import StripeUnavailable

    wallet = below_threshold(alice, stripe_settings, client, topup_pack)
    stripe_settings.fail_next(count=3, status=500, path="/v1/payment_intents")
    with pytest.raises(StripeUnavailable):
        topups.run_auto_top_up(wallet_id=wallet.pk, crossing=wallet.auto_topup_crossing)
    topups.update_settings(user=alice, settings=topups.TopUpSettings(
        enabled=False, threshold=500, pack=topup_pack, monthly_limit=3, monthly_cap_cents=None, time_zone="UTC"))
    # The task's retry comes after the user said stop: nothing is charged.
    topups.run_auto_top_up(wallet_id=wallet.pk, crossing=wallet.auto_topup_crossing)
    assert payment_intents(stripe_settings) == []
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.failure_code) == (Purchase.Status.FAILED, "switched_off")
    assert wallet_of(alice).balance == 400
