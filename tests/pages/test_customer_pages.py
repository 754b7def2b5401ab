"""Customer pages speak of what happened, in minutes, tokens and credits; the internals (states,
events, cost, prices, markup, supervisor words) are on the staff call page only. What credits buy
is said in minutes, worst case to typical, on Buy, Talk and the call's page."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import services as billing
from billing.models import LedgerEntry
from sessions.models import CallEvent, CallState, Cause, ModelPrice
from sessions.rates import CreditRates, credit_rates, format_minutes
from tests.sessions_pages.helpers import make_assistant, make_call

pytestmark = pytest.mark.django_db

# Words a customer page must never show (case-insensitive, as whole words).
INTERNAL_WORDS = ("killed", "supervisor", "sideband", "markup", "openai", "hangup", "pending", "→", "µ$",
                  "realtime-call:", "metered")

PRICES = {
    "text_in_microusd_per_mtok": 4_000_000, "text_cached_microusd_per_mtok": 400_000,
    "text_out_microusd_per_mtok": 16_000_000, "audio_in_microusd_per_mtok": 32_000_000,
    "audio_cached_microusd_per_mtok": 400_000, "audio_out_microusd_per_mtok": 64_000_000,
}


def visible_text(html: str) -> str:
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    html = re.sub(r"<[^>]+>", " ", html)
    return re.sub(r"\s+", " ", html)


def internal_words_in(html: str) -> list[str]:
    text = visible_text(html).lower()
    return [word for word in INTERNAL_WORDS if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)]


@pytest.fixture
def priced(db):
    ModelPrice.objects.update_or_create(model="gpt-realtime", defaults=PRICES)


@pytest.fixture
def concierge(priced):
    # 600 µ$ a minute at the hold rate, 50 % markup, 100 credits per $: 0.09 → 1 credit a minute.
    return make_assistant(name="Concierge", hold_microusd_per_minute=60_000, markup_percent=50)


def killed_call(alice, assistant):
    call = make_call(user=alice, assistant=assistant, state=CallState.KILLED, seconds=240,
                     end_reason=Cause.CREDITS_EXHAUSTED, credits_charged=4, cost_microusd=26_000,
                     audio_in_tokens=640, audio_out_tokens=1200)
    CallEvent.objects.create(call=call, at=call.started_at, kind=CallEvent.Kind.SIDEBAND_ATTACHED,
                             detail="Supervisor attached to the sideband.")
    CallEvent.objects.create(call=call, at=call.ending_at, from_state=CallState.ACTIVE, to_state=CallState.KILLED,
                             cause=Cause.CREDITS_EXHAUSTED)
    return call


def test_the_customer_call_page_says_what_happened_without_internals(alice_client, alice, concierge, settings):
    settings.REALTIME_CREDITS_PER_USD = 100
    call = killed_call(alice, concierge)
    html = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()
    assert internal_words_in(html) == []
    text = visible_text(html)
    assert "Your credits ran out" in text
    assert re.search(r"Length 4 min", text)
    assert re.search(r"Tokens 1,840", text)
    assert re.search(r"Credits 4 ", text)
    assert "Credits a minute 1.0" in text
    assert "$" not in text


def test_the_staff_call_page_keeps_the_internals(staff_client, alice, concierge):
    call = killed_call(alice, concierge)
    html = staff_client.get(reverse("staff_call_detail", args=[call.public_id])).content.decode()
    assert "killed" in html
    assert "supervisor attached" in html
    assert "markup" in html


def test_the_staff_call_page_is_for_staff_only(alice_client, alice, concierge):
    call = killed_call(alice, concierge)
    response = alice_client.get(reverse("staff_call_detail", args=[call.public_id]))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_history_says_what_happened_to_each_call(alice_client, alice, concierge):
    killed_call(alice, concierge)
    make_call(user=alice, assistant=concierge)  # hung up by the user
    html = alice_client.get(reverse("call_history")).content.decode()
    assert internal_words_in(html) == []
    states = re.findall(r'data-testid="call-row-state" data-state="\w+">([^<]+)<', html)
    assert states == ["You hung up", "Your credits ran out"] or states == ["Your credits ran out", "You hung up"]
    assert ">Cost<" not in html


def test_wallet_lines_read_like_calls(alice_client, alice, concierge):
    billing.grant(user=alice, credits=1000, idempotency_key="g", kind=LedgerEntry.Kind.BONUS)
    call = make_call(user=alice, assistant=concierge, seconds=240,
                     created_at=timezone.now().replace(month=12, day=1, hour=12) - timedelta(days=0))
    hold = billing.place_hold(user=alice, credits=20, idempotency_key=f"realtime-call:{call.public_id}:hold",
                              reference=f"realtime-call:{call.public_id}")
    billing.settle_hold(hold=hold, used_credits=4, idempotency_key=f"realtime-call:{call.public_id}:settle")
    html = alice_client.get(reverse("billing_wallet")).content.decode()
    day = call.created_at.strftime("%b %-d")
    assert f"Call on {day}, 4 min: 4 credits" in visible_text(html)
    assert "realtime-call:" not in html.replace(f'href="/calls/{call.public_id}/"', "")
    assert ">−4</td>" in html
    assert ">+1,000</td>" in html


def test_the_buy_page_says_what_each_pack_buys(alice_client, concierge, pack):
    rates = credit_rates([concierge])[concierge.pk]
    html = alice_client.get(reverse("buy_credits")).content.decode()
    form = html[html.index('data-pack="testpack"'):]
    form = form[:form.index("</form>")]
    minutes = re.findall(r'data-testid="pack-minutes">≈ <strong>([^<]+)</strong> of talk with Concierge', form)
    assert minutes == [str(rates.minutes_range(pack.credits))]
    assert not rates.measured  # no calls yet: the default typical rate
    worst = format_minutes(pack.credits / rates.worst_per_minute)
    typical = format_minutes(pack.credits / rates.typical_per_minute)
    assert minutes == [f"{worst}–{typical} min"]


def test_the_typical_rate_comes_from_recent_calls(alice, concierge):
    # Three 5-minute calls charged 20 credits each: 4 credits a minute.
    for _ in range(3):
        make_call(user=alice, assistant=concierge, seconds=300, credits_charged=20, credits_used=20,
                  metered_at=timezone.now())
    rates = credit_rates([concierge])[concierge.pk]
    assert rates.measured
    assert rates.typical_per_minute == min(4, rates.worst_per_minute)


def test_minutes_ranges_round_down_and_cap_at_one_call():
    rates = CreditRates(worst_per_minute=42, typical_per_minute=12, measured=True)
    assert str(rates.minutes_range(1000)) == "23–83 min"
    assert str(rates.minutes_range(100)) == "2.3–8.3 min"
    capped = rates.minutes_range(1000, max_minutes=30)
    assert (str(capped), capped.capped) == ("23–30 min", True)
    assert str(rates.minutes_range(0)) == "0 min"


def test_talk_page_says_why_start_is_blocked_with_a_buy_link(alice_client, concierge):
    html = alice_client.get(reverse("talk")).content.decode()
    assert 'data-testid="start-blocked"' in html
    assert 'data-testid="start-blocked-buy"' in html
    assert f'href="{reverse("buy_credits")}" data-testid="start-blocked-buy"' in html
