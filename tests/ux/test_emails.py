"""The emails of issue 12, item 6: what each says and when it is sent (once per crossing)."""

import pytest
from django.core import mail

from billing import services
from billing.models import Wallet
from sessions.models import Cause
from tests.billing.conftest import start_purchase
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def buy(stripe_settings, pack, django_capture_on_commit_callbacks):
    """Buy the 1,000-credit test pack through fakes/stripe; returns the purchase."""

    def _buy(user):
        purchase = start_purchase(user)
        stripe_settings.pay(purchase.checkout_session_id)
        with django_capture_on_commit_callbacks(execute=True):
            return services.fulfil_checkout(session_id=purchase.checkout_session_id)

    return _buy


def spend(user, credits: int, key: str, capture) -> None:
    """Use credits the way a call does: a hold, then its settlement."""
    with capture(execute=True):
        hold = services.place_hold(user=user, credits=credits, idempotency_key=f"{key}:hold", reference=key)
        services.settle_hold(hold=hold, used_credits=credits, idempotency_key=f"{key}:settle")


def test_a_fulfilled_purchase_sends_one_receipt(alice, buy, django_capture_on_commit_callbacks):
    purchase = buy(alice)

    [receipt] = mail.outbox
    assert receipt.to == ["alice@example.com"]
    assert receipt.subject == "Receipt: 1,000 credits for $10.00"
    assert "Pack:      Test pack" in receipt.body
    assert "Paid:      $10.00" in receipt.body
    assert f"Reference: {purchase.public_id}" in receipt.body
    assert "Your balance is now 1,000 credits." in receipt.body
    assert "/billing/purchases/" in receipt.body
    assert receipt.reply_to == ["support@localhost"]

    # The success page, the webhook and the sweep may all fulfil it again: no second receipt.
    with django_capture_on_commit_callbacks(execute=True):
        services.fulfil_checkout(session_id=purchase.checkout_session_id)
    assert len(mail.outbox) == 1


def test_low_balance_is_sent_once_per_crossing_of_20_percent_of_the_last_pack(
    alice, buy, django_capture_on_commit_callbacks
):
    buy(alice)  # 1,000 credits: the warning comes at 200
    mail.outbox.clear()

    spend(alice, 799, "call-1", django_capture_on_commit_callbacks)  # 201 left
    assert mail.outbox == []

    spend(alice, 1, "call-2", django_capture_on_commit_callbacks)  # 200 left: crossed
    [warning] = mail.outbox
    assert warning.subject == "Your balance is low: 200 credits left"
    assert "at or below your warning threshold of 200 credits" in warning.body
    assert "/billing/buy/" in warning.body and "/account/" in warning.body

    spend(alice, 50, "call-3", django_capture_on_commit_callbacks)  # 150: still below, no repeat
    assert len(mail.outbox) == 1

    buy(alice)  # 1,150: above again (a receipt, no warning)
    assert [m.subject for m in mail.outbox[1:]] == ["Receipt: 1,000 credits for $10.00"]

    spend(alice, 960, "call-4", django_capture_on_commit_callbacks)  # 190: the second crossing
    assert [m.subject for m in mail.outbox[2:]] == ["Your balance is low: 190 credits left"]


def test_the_threshold_the_user_set_wins(alice, buy, django_capture_on_commit_callbacks):
    buy(alice)
    Wallet.objects.filter(user=alice).update(low_balance_threshold=500)
    mail.outbox.clear()

    spend(alice, 499, "call-1", django_capture_on_commit_callbacks)  # 501
    assert mail.outbox == []
    spend(alice, 1, "call-2", django_capture_on_commit_callbacks)  # 500
    assert [m.subject for m in mail.outbox] == ["Your balance is low: 500 credits left"]


def test_no_low_balance_warning_without_a_purchase_or_a_threshold(alice, django_capture_on_commit_callbacks):
    staff = StaffFactory()
    services.adjust(user=alice, credits=100, actor=staff, reason="welcome", idempotency_key="t:1")

    spend(alice, 95, "call-1", django_capture_on_commit_callbacks)

    assert mail.outbox == []


def test_a_call_cut_off_for_credits_sends_one_email(alice_client, alice, openai_settings, django_capture_on_commit_callbacks):
    from sessions import services as calls
    from sessions.models import RealtimeCall
    from tests.factories import fund
    from tests.sessions.factories import AssistantFactory
    from tests.sessions.helpers import make_offer

    fund(alice, 10_000)
    assistant = AssistantFactory(name="Concierge")
    response = alice_client.post(f"/api/calls/?assistant={assistant.pk}", data=make_offer(), content_type="application/sdp")
    assert response.status_code == 201
    call = RealtimeCall.objects.get(public_id=response["X-Call-Id"])
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        calls.settle_call(call=call, cause=Cause.CREDITS_EXHAUSTED, used_credits=1_234)
        calls.settle_call(call=call, cause=Cause.CREDITS_EXHAUSTED, used_credits=1_234)  # a second settler

    [email] = mail.outbox
    assert email.to == ["alice@example.com"]
    assert email.subject == "Your call with Concierge ended: your credits ran out"
    assert "used 1,234 credits. Your balance is now 8,766 credits." in email.body
    assert f"/calls/{call.public_id}/" in email.body
    assert "/billing/buy/" in email.body


def test_a_call_the_user_hung_up_sends_no_email(alice_client, alice, openai_settings, django_capture_on_commit_callbacks):
    from sessions import services as calls
    from sessions.models import RealtimeCall
    from tests.factories import fund
    from tests.sessions.factories import AssistantFactory
    from tests.sessions.helpers import make_offer

    fund(alice, 10_000)
    response = alice_client.post(f"/api/calls/?assistant={AssistantFactory().pk}", data=make_offer(),
                                 content_type="application/sdp")
    call = RealtimeCall.objects.get(public_id=response["X-Call-Id"])
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        calls.settle_call(call=call, cause=Cause.USER_HANGUP, used_credits=10)

    assert mail.outbox == []


def test_the_user_sets_the_threshold_on_the_account_page(alice_client, alice, buy, django_capture_on_commit_callbacks):
    buy(alice)
    mail.outbox.clear()
    page = alice_client.get("/account/").content.decode()
    assert "falls to 200 credits or below" in page  # the default: 20% of the 1,000-credit pack

    response = alice_client.post("/account/", {"form": "low_balance", "threshold": "700"})

    assert response.status_code == 302
    assert Wallet.objects.get(user=alice).low_balance_threshold == 700
    spend(alice, 300, "call-1", django_capture_on_commit_callbacks)
    assert [m.subject for m in mail.outbox] == ["Your balance is low: 700 credits left"]


def test_a_negative_threshold_is_refused_under_its_field(alice_client, alice):
    response = alice_client.post("/account/", {"form": "low_balance", "threshold": "-5"})

    assert response.status_code == 200
    assert "greater than or equal to 0" in response.content.decode()
    assert Wallet.objects.get(user=alice).low_balance_threshold is None
