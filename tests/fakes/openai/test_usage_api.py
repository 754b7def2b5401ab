"""Usage and Costs APIs report exactly what the fake served, priced as in the reference table."""

import calendar
from decimal import Decimal

import httpx
import openai
import pytest
from openai import OpenAI

from fakes.openai.pytest_plugin import start_fake_openai

DAY = 86400
T0 = calendar.timegm((2026, 3, 10, 12, 0, 0))  # a fixed UTC instant, on a minute boundary


def usage(text=100, cached_text=64, audio=20, cached_audio=0, out_text=10, out_audio=40):
    return {
        "total_tokens": text + audio + out_text + out_audio,
        "input_tokens": text + audio,
        "output_tokens": out_text + out_audio,
        "input_token_details": {
            "text_tokens": text,
            "audio_tokens": audio,
            "image_tokens": 0,
            "cached_tokens": cached_text + cached_audio,
            "cached_tokens_details": {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": 0,
            },
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }


# USD per 1M tokens, copied from the reference (§7), independent of fakes.openai.pricing.
REFERENCE_PRICES = {
    "gpt-realtime": {
        "text_in": "4.00",
        "text_cached": "0.40",
        "text_out": "16.00",
        "audio_in": "32.00",
        "audio_cached": "0.40",
        "audio_out": "64.00",
    },
    "gpt-realtime-mini": {
        "text_in": "0.60",
        "text_cached": "0.06",
        "text_out": "2.40",
        "audio_in": "10.00",
        "audio_cached": "0.30",
        "audio_out": "20.00",
    },
}


def reference_cost(model: str, u: dict) -> Decimal:
    p = {k: Decimal(v) for k, v in REFERENCE_PRICES[model].items()}
    itd, ctd, otd = (
        u["input_token_details"],
        u["input_token_details"]["cached_tokens_details"],
        u["output_token_details"],
    )
    total = (
        (itd["text_tokens"] - ctd["text_tokens"]) * p["text_in"]
        + ctd["text_tokens"] * p["text_cached"]
        + (itd["audio_tokens"] - ctd["audio_tokens"]) * p["audio_in"]
        + ctd["audio_tokens"] * p["audio_cached"]
        + otd["text_tokens"] * p["text_out"]
        + otd["audio_tokens"] * p["audio_out"]
    )
    return total / Decimal(1_000_000)


@pytest.fixture
def served(fake_openai):
    """Usage at T0, T0+30s, T0+3m and the next day, in two models."""
    realtime = fake_openai.create_call(session={"type": "realtime", "model": "gpt-realtime"})["id"]
    mini = fake_openai.create_call(session={"type": "realtime", "model": "gpt-realtime-mini"})["id"]
    plan = [
        (0, realtime, usage()),
        (30, mini, usage(text=50, cached_text=0)),
        (180, realtime, usage(audio=70, cached_audio=64)),
        (DAY + 5, realtime, usage(out_audio=400)),
    ]
    for offset, call_id, u in plan:
        fake_openai.set_clock(T0 + offset)
        fake_openai.response_done(call_id, u)
    return plan


def test_minute_buckets_are_aligned_and_sum_to_what_was_served(admin, served):
    page = admin.admin.organization.usage.completions(
        start_time=T0 - 90, end_time=T0 + 300, bucket_width="1m"
    )
    assert [b.start_time for b in page.data] == [T0 - 120 + 60 * i for i in range(7)]
    assert all(b.end_time - b.start_time == 60 for b in page.data)
    assert not page.has_more and page.next_page is None
    by_start = {b.start_time: b.results for b in page.data}
    assert by_start[T0 - 60] == [] and by_start[T0 + 60] == []
    (first,) = by_start[T0]
    assert first.num_model_requests == 2
    served_today = [u for offset, _, u in served if offset < 300]
    results = [r for b in page.data for r in b.results]
    assert sum(r.input_tokens for r in results) == sum(u["input_tokens"] for u in served_today)
    assert sum(r.output_tokens for r in results) == sum(u["output_tokens"] for u in served_today)
    r = by_start[T0 + 180][0]
    assert (r.input_audio_tokens, r.input_cached_audio_tokens) == (6, 64)  # uncached vs cached
    assert (r.input_text_tokens, r.input_cached_text_tokens) == (36, 64)
    assert r.input_cached_tokens == 128 and r.input_uncached_tokens == 42
    assert r.input_tokens == r.input_cached_tokens + r.input_uncached_tokens
    assert r.model is None and r.api_key_id is None and r.project_id is None


def test_day_buckets_default_limit_and_maximum(admin, served, fake_openai):
    fake_openai.set_clock(T0 + 3 * DAY)
    page = admin.admin.organization.usage.completions(start_time=T0 - 2 * DAY)
    assert len(page.data) == 6 and page.data[0].start_time % DAY == 0
    page = admin.admin.organization.usage.completions(start_time=T0 - 30 * DAY, end_time=T0 + 2 * DAY)
    assert len(page.data) == 7 and page.has_more
    with pytest.raises(openai.BadRequestError):
        admin.admin.organization.usage.completions(start_time=T0, bucket_width="1d", limit=32)
    with pytest.raises(openai.BadRequestError):
        admin.admin.organization.usage.completions(start_time=T0, bucket_width="1h", limit=169)
    hours = admin.admin.organization.usage.completions(start_time=T0 - 3600, bucket_width="1h", limit=168)
    assert hours.data[0].start_time % 3600 == 0


def test_pagination_walks_all_buckets(admin, served):
    starts, totals, page_token, pages = [], 0, None, 0
    while True:
        kwargs = {"page": page_token} if page_token else {}
        page = admin.admin.organization.usage.completions(
            start_time=T0, end_time=T0 + 300, bucket_width="1m", limit=2, **kwargs
        )
        pages += 1
        starts += [b.start_time for b in page.data]
        totals += sum(r.output_tokens for b in page.data for r in b.results)
        if not page.has_more:
            break
        page_token = page.next_page
    assert pages == 3
    assert starts == [T0 + 60 * i for i in range(5)]
    assert totals == sum(u["output_tokens"] for offset, _, u in served if offset < 300)


def test_group_by_and_filters(admin, served, fake_openai):
    page = admin.admin.organization.usage.completions(
        start_time=T0, end_time=T0 + 60, bucket_width="1m", group_by=["model", "api_key_id", "project_id"]
    )
    results = sorted(page.data[0].results, key=lambda r: r.model)
    assert [r.model for r in results] == ["gpt-realtime", "gpt-realtime-mini"]
    assert {r.api_key_id for r in results} == {fake_openai.project_key_id}
    assert {r.project_id for r in results} == {fake_openai.project_id}
    only_mini = admin.admin.organization.usage.completions(
        start_time=T0, end_time=T0 + 300, bucket_width="1m", models=["gpt-realtime-mini"]
    )
    assert sum(r.num_model_requests for b in only_mini.data for r in b.results) == 1
    other_key = admin.admin.organization.usage.completions(
        start_time=T0, end_time=T0 + 300, bucket_width="1m", api_key_ids=["key_other"]
    )
    assert all(b.results == [] for b in other_key.data)
    batch_only = admin.admin.organization.usage.completions(
        start_time=T0, end_time=T0 + 300, bucket_width="1m", batch=True
    )
    assert all(b.results == [] for b in batch_only.data)


def test_start_time_is_required(fake_openai):
    resp = httpx.get(
        fake_openai.base_url + "/organization/usage/completions",
        headers={"Authorization": f"Bearer {fake_openai.admin_key}"},
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "start_time"


def test_costs_match_the_reference_price_table(admin, served):
    page = admin.admin.organization.usage.costs(start_time=T0, end_time=T0 - T0 % DAY + 2 * DAY)
    assert [b.start_time for b in page.data] == [T0 - T0 % DAY, T0 - T0 % DAY + DAY]
    expected_day1 = sum(
        reference_cost("gpt-realtime-mini" if i == 1 else "gpt-realtime", u)
        for i, (offset, _, u) in enumerate(served)
        if offset < DAY
    )
    (day1,) = page.data[0].results
    assert Decimal(str(day1.amount.value)) == expected_day1
    assert day1.amount.currency == "usd" and day1.line_item is None and day1.quantity is None
    (day2,) = page.data[1].results
    assert Decimal(str(day2.amount.value)) == reference_cost("gpt-realtime", served[3][2])

    items = admin.admin.organization.usage.costs(start_time=T0, end_time=T0 + DAY, group_by=["line_item"])
    by_item = {r.line_item: r for r in items.data[0].results}
    audio_out = by_item["gpt-realtime, output_audio_tokens"]
    assert audio_out.quantity == 80 and audio_out.quantity_unit == "tokens"
    assert Decimal(str(audio_out.amount.value)) == Decimal(80) * Decimal("64.00") / 1_000_000
    assert sum(Decimal(str(r.amount.value)) for r in by_item.values()) == pytest.approx(expected_day1)
    filtered = admin.admin.organization.usage.costs(
        start_time=T0, end_time=T0 + DAY, line_items=["gpt-realtime-mini, input_text_tokens"]
    )
    assert Decimal(str(filtered.data[0].results[0].amount.value)) == Decimal(50) * Decimal("0.60") / 1_000_000


def test_costs_limits_and_width(admin, served):
    with pytest.raises(openai.BadRequestError):
        admin.admin.organization.usage.costs(start_time=T0, limit=181)
    with pytest.raises(openai.BadRequestError):
        admin.admin.organization.usage.costs(start_time=T0, bucket_width="1h")
    grouped = admin.admin.organization.usage.costs(
        start_time=T0, end_time=T0 + DAY, group_by=["project_id", "api_key_id"]
    )
    assert grouped.data[0].results[0].project_id == "proj_fake"


@pytest.mark.slow
async def test_projects_ephemeral_attribution_and_persistence(tmp_path):
    db = tmp_path / "usage.sqlite3"
    args = (
        "--no-media",
        "--usage-db",
        str(db),
        "--project-key",
        "sk-proj-a:proj_a",
        "--project-key",
        "sk-proj-b:proj_b",
        "--admin-key",
        "sk-admin-x",
        "--no-ephemeral-usage-under-minting-key",
    )
    fake = start_fake_openai(*args)
    try:
        a = OpenAI(api_key="sk-proj-a", base_url=fake.base_url, max_retries=0)
        b = OpenAI(api_key="sk-proj-b", base_url=fake.base_url, max_retries=0)
        secret = b.realtime.client_secrets.create()
        browser = OpenAI(api_key=secret.value, base_url=fake.base_url, max_retries=0)
        offer = (
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        )
        ek_call = (
            browser.realtime.calls.with_raw_response.create(sdp=offer).headers["location"].rsplit("/", 1)[-1]
        )
        a_call = a.realtime.calls.with_raw_response.create(sdp=offer, session={"type": "realtime"})
        a_call = a_call.headers["location"].rsplit("/", 1)[-1]
        with pytest.raises(openai.NotFoundError):
            a.realtime.calls.hangup(ek_call)  # another project's call
        fake.response_done(ek_call, usage())
        fake.response_done(a_call, usage())
    finally:
        fake.close()
    fake = start_fake_openai(*args)  # a restarted fake still reports what it served before
    try:
        admin = OpenAI(api_key="x", admin_api_key="sk-admin-x", base_url=fake.base_url, max_retries=0)
        page = admin.admin.organization.usage.completions(
            start_time=fake.now() - 3600, bucket_width="1h", group_by=["project_id", "api_key_id"]
        )
        got = {(r.project_id, r.api_key_id) for b in page.data for r in b.results}
        assert got == {("proj_b", None), ("proj_a", fake.health()["project_keys"][0]["key_id"])}
    finally:
        fake.close()
