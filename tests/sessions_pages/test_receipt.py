"""The staff call page's receipt: token classes × prices → cost → credits, and what billing did
(the customer's page shows the same bill without prices, cost or markup: tests/pages/).

Usage is metered through the supervisor's own writer (`store.meter_batch`) and settled through
`sessions.services.settle_call`, as in production; the page must show exactly those figures.
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import services as billing
from sessions import services
from sessions.models import CallEvent, CallState, Cause, ModelPrice, TokenCounts
from sessions.supervisor import store
from tests.sessions_pages.helpers import make_assistant, make_call

pytestmark = pytest.mark.django_db

# OpenAI's gpt-realtime prices, per million tokens: text in/cached/out $4/$0.40/$16, audio $32/$0.40/$64.
PRICES = {
    "text_in_microusd_per_mtok": 4_000_000, "text_cached_microusd_per_mtok": 400_000,
    "text_out_microusd_per_mtok": 16_000_000, "audio_in_microusd_per_mtok": 32_000_000,
    "audio_cached_microusd_per_mtok": 400_000, "audio_out_microusd_per_mtok": 64_000_000,
}
RESPONSES = [
    TokenCounts(text_in=1000, text_out=100, audio_in=640, audio_out=1200),  # 102,880 µ$
    TokenCounts(text_in=17, text_cached=301, audio_in=333, audio_cached=500, audio_out=777),  # 60,772.4 → 60,773 µ$
]


@pytest.fixture
def metered_call(settings, alice):
    """A call of alice's with two metered responses: 163,653 µ$ at 50 % markup → 25 credits."""
    settings.REALTIME_CREDITS_PER_USD = 100

    def make(*, held: int, balance: int):
        ModelPrice.objects.update_or_create(model="gpt-realtime", defaults=PRICES)
        assistant = make_assistant(name="Concierge")
        call = make_call(user=alice, assistant=assistant, state=CallState.ACTIVE, markup_percent=50,
                         credits_held=held, credits_charged=None, openai_call_id="rtc_receipt_0001")
        billing.grant(user=alice, credits=balance, idempotency_key="receipt-grant", kind="bonus")
        hold = billing.place_hold(user=alice, credits=held, idempotency_key=f"realtime-call:{call.public_id}:hold",
                                  reference=f"realtime-call:{call.public_id}")
        call.hold_id = hold.pk
        call.save(update_fields=["hold_id"])
        price = ModelPrice.objects.get(model="gpt-realtime")
        assert call.started_at is not None
        at = call.started_at + timedelta(seconds=5)
        store.meter_batch(rows=[
            store.UsageRow(pk=call.pk, response_id=f"resp_{i}", kind="response", tokens=tokens,
                           cost_microusd=price.cost_microusd(tokens), at=at + timedelta(seconds=i))
            for i, tokens in enumerate(RESPONSES)
        ])
        store.record_event(pk=call.pk, kind=store.EVENT_SIDEBAND_ATTACHED, detail="Supervisor attached to the sideband.")
        store.record_event(pk=call.pk, kind=store.EVENT_WARNING, detail="Credits are running out.")
        call.refresh_from_db()
        services.transition(call, to=CallState.ENDING, cause=Cause.CREDITS_EXHAUSTED,
                            end_reason=Cause.CREDITS_EXHAUSTED)
        store.record_event(pk=call.pk, kind=CallEvent.Kind.HANGUP_SENT, cause=Cause.CREDITS_EXHAUSTED,
                           detail="Hung up by the supervisor.")
        return services.settle_call(call=call, cause=Cause.CALL_CLOSED, used_credits=call.credits_used)

    return make


def _cells(html: str, testid: str, data_class: str | None = None) -> dict[str, str]:
    pattern = f'data-testid="{testid}"' + (f' data-class="{data_class}"' if data_class else "")
    start = html.index(pattern)
    row = html[start:html.index("</tr>", start)]
    return {field: value.strip() for field, value in re.findall(r'data-field="(\w+)">([^<]*)<', row)}


def _cell(html: str, testid: str) -> str:
    match = re.search(f'data-testid="{testid}"[^>]*>([^<]*)<', html)
    assert match is not None, f"no {testid} in the page"
    return match.group(1).strip()


def test_the_receipt_itemises_each_token_class_and_adds_up_to_the_charge(staff_client, metered_call):
    call = metered_call(held=120, balance=200)
    assert (call.state, call.credits_used, call.cost_microusd, call.credits_charged) == (
        CallState.KILLED, 25, 163_653, 25,
    )

    response = staff_client.get(reverse("staff_call_detail", args=[call.public_id]))
    html = response.content.decode()
    receipt = response.context["receipt"]

    expected = {
        # class: (tokens, price per 1M, cost, credits to the hundredth)
        "text_in": ("1017", "$4.00", "$0.004068", "0.62"),
        "text_cached": ("301", "$0.40", "$0.000121", "0.02"),
        "text_out": ("100", "$16.00", "$0.001600", "0.24"),
        "audio_in": ("973", "$32.00", "$0.031136", "4.68"),
        "audio_cached": ("500", "$0.40", "$0.000200", "0.03"),
        "audio_out": ("1977", "$64.00", "$0.126528", "18.98"),
    }
    for token_class, (tokens, price, cost, credits) in expected.items():
        assert _cells(html, "receipt-line", token_class) == {
            "tokens": tokens, "price": price, "cost": cost, "credits": credits,
        }, token_class
    # Σ lines = 163,653 µ$ = the metered cost (per-response rounding added nothing here); credits
    # are rounded once for the call: 24.57 of the lines → 25.
    assert _cells(html, "receipt-rounding") == {"cost": "$0.000000", "credits": "0.43"}
    assert _cells(html, "receipt-used") == {"cost": "$0.163653", "credits": "25"}
    assert receipt.rounding_credits == Decimal("0.43")
    assert "2 metered responses; 50% markup, 100 credits per $" in html
    assert _cell(html, "receipt-held") == "120"
    assert _cell(html, "receipt-from-hold") == "25"
    assert _cell(html, "receipt-released") == "95"
    assert _cell(html, "receipt-charged") == "25 credits"
    assert 'data-testid="receipt-overshoot"' not in html
    assert 'data-testid="receipt-uncollected"' not in html
    assert 'data-testid="receipt-full-hold"' not in html


def test_the_receipt_shows_overshoot_and_what_could_not_be_collected(staff_client, metered_call):
    # 25 credits used against a hold of 20, with 2 more available: 5 over, 2 collected, 3 not.
    call = metered_call(held=20, balance=22)
    assert call.credits_charged == 22

    html = staff_client.get(reverse("staff_call_detail", args=[call.public_id])).content.decode()

    assert _cells(html, "receipt-used") == {"cost": "$0.163653", "credits": "25"}
    assert _cell(html, "receipt-held") == "20"
    assert _cell(html, "receipt-from-hold") == "20"
    assert _cell(html, "receipt-released") == "0"
    assert re.search(r'data-testid="receipt-overshoot"><th>[^<]*</th><td class="num">5<', html)
    assert re.search(r'data-testid="receipt-uncollected"><th>[^<]*</th><td class="num">−3<', html)
    assert _cell(html, "receipt-charged") == "22 credits"


def test_the_timeline_shows_attach_warning_and_hangup_cause(staff_client, metered_call):
    call = metered_call(held=120, balance=200)

    response = staff_client.get(reverse("staff_call_detail", args=[call.public_id]))
    html = response.content.decode()

    kinds = [(e.kind, e.to_state, e.cause) for e in response.context["events"]]
    assert kinds == [
        ("state", "pending", "started"),
        ("state", "active", "upstream_answered"),
        ("sideband_attached", "", ""),
        ("warning", "", ""),
        ("state", "ending", "credits_exhausted"),
        ("hangup_sent", "", "credits_exhausted"),
        ("state", "killed", "call_closed"),
    ]
    assert "supervisor attached" in html
    assert "Credits are running out." in html
    assert "hangup sent to OpenAI</strong>\n      <span class=\"cause\">· credits ran out" in html
    assert "Your credits for this call ran out, so it was ended." in html


def test_an_unmetered_call_says_its_full_hold_was_charged(staff_client, alice, settings):
    ModelPrice.objects.update_or_create(model="gpt-realtime", defaults=PRICES)
    assistant = make_assistant(name="Concierge")
    call = make_call(user=alice, assistant=assistant, state=CallState.ACTIVE, credits_held=40, credits_charged=None,
                     expected_end_at=timezone.now() - timedelta(minutes=5))
    billing.grant(user=alice, credits=40, idempotency_key="receipt-grant-2", kind="bonus")
    hold = billing.place_hold(user=alice, credits=40, idempotency_key="receipt-hold-2", reference="x")
    call.hold_id = hold.pk
    call.save(update_fields=["hold_id"])
    services.settle_call(call=call, cause=Cause.UNMETERED)

    html = staff_client.get(reverse("staff_call_detail", args=[call.public_id])).content.decode()

    assert 'data-testid="receipt-full-hold"' in html
    assert _cells(html, "receipt-used") == {"cost": "$0.000000", "credits": "0"}
    assert _cell(html, "receipt-charged") == "40 credits"


def test_an_open_call_is_not_settled_yet(alice_client, alice):
    assistant = make_assistant(name="Concierge")
    call = make_call(user=alice, assistant=assistant, state=CallState.ACTIVE, credits_charged=None)

    html = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()

    assert _cell(html, "receipt-charged") == "not settled yet"
