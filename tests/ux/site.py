"""What the page-by-page browser checks need: a site with one of everything, the list of its
pages, and axe-core run inside a page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": (1280, 800), "mobile": (390, 844)}
# axe's rule sets for WCAG 2.1 A/AA plus its best practices; a serious or critical violation fails.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING = {"serious", "critical"}


@dataclass(frozen=True)
class SitePage:
    name: str
    path: str
    who: str  # "anonymous", "user" or "staff"


@dataclass
class Site:
    user_email: str
    staff_email: str
    pages: list[SitePage]


def build_site() -> Site:
    """Rows for every page to show something: a user with a paid purchase, an ended call and a
    staff adjustment; a staff member; an open flag. Call before a browser opens (ORM)."""
    from django.utils import timezone

    from billing import services as billing
    from billing.models import CreditPack, LedgerEntry, Purchase
    from sessions.models import Assistant, CallState, Cause, ModelPrice, RealtimeCall
    from tests.factories import StaffFactory, UserFactory

    ModelPrice.objects.get_or_create(model="gpt-realtime", defaults={
        "text_in_microusd_per_mtok": 4_000_000, "text_cached_microusd_per_mtok": 400_000,
        "text_out_microusd_per_mtok": 16_000_000, "audio_in_microusd_per_mtok": 32_000_000,
        "audio_cached_microusd_per_mtok": 400_000, "audio_out_microusd_per_mtok": 64_000_000,
    })
    assistant = Assistant.objects.create(name="Concierge", model="gpt-realtime", max_call_seconds=600)
    pack, _ = CreditPack.objects.get_or_create(
        key="starter", defaults={"name": "Starter", "credits": 1000, "price_cents": 1000, "currency": "usd"}
    )
    user = UserFactory.create(email="dora@example.com", name="Dora")
    staff = StaffFactory.create(email="sam@example.com", name="Sam")
    now = timezone.now()
    purchase = Purchase.objects.create(
        user=user, pack=pack, credits=pack.credits, amount_cents=pack.price_cents, currency="usd",
        status=Purchase.Status.PAID, credited_at=now, checkout_session_id="cs_test_site_paid",
    )
    billing.grant(user=user, credits=pack.credits, idempotency_key=f"purchase:{purchase.public_id}",
                  kind=LedgerEntry.Kind.PURCHASE, reference=f"purchase:{purchase.public_id}", memo="Starter pack")
    billing.adjust(user=user, credits=250, actor=staff, reason="Sorry for the outage", idempotency_key="site:adjust",
                   show_reason_to_user=True)
    call = RealtimeCall.objects.create(
        user=user, assistant=assistant, mode="proxy", state=CallState.ENDED, model="gpt-realtime",
        markup_percent=assistant.markup_percent, allowed_seconds=600, created_at=now - timedelta(minutes=5),
        started_at=now - timedelta(minutes=5), ended_at=now - timedelta(minutes=2),
        expected_end_at=now + timedelta(minutes=5), end_reason=Cause.USER_HANGUP, credits_held=500,
        credits_charged=5, credits_used=5, cost_microusd=28_000, updated_at=now,
    )
    # A call in flight, for the staff's live calls page (and its "Hang up now").
    RealtimeCall.objects.create(
        user=user, assistant=assistant, mode="proxy", state=CallState.ACTIVE, model="gpt-realtime",
        markup_percent=assistant.markup_percent, allowed_seconds=600, created_at=now - timedelta(minutes=1),
        started_at=now - timedelta(minutes=1), expected_end_at=now + timedelta(minutes=9), credits_held=500,
        credits_used=3, cost_microusd=18_000, openai_call_id="rtc_site_live", updated_at=now,
    )
    pages = [
        SitePage("home", "/", "anonymous"),
        SitePage("sign-in", "/accounts/login/", "anonymous"),
        SitePage("sign-up", "/accounts/signup/", "anonymous"),
        SitePage("password-reset", "/accounts/password/reset/", "anonymous"),
        SitePage("not-found", "/no-such-page/", "anonymous"),
        SitePage("dashboard", "/dashboard/", "user"),
        SitePage("buy", "/billing/buy/", "user"),
        SitePage("success", f"/billing/success/?session_id={purchase.checkout_session_id}", "user"),
        SitePage("wallet", "/billing/wallet/", "user"),
        SitePage("purchases", "/billing/purchases/", "user"),
        SitePage("auto-top-up", "/billing/auto-top-up/", "user"),
        SitePage("talk", "/talk/", "user"),
        SitePage("history", "/calls/", "user"),
        SitePage("call", f"/calls/{call.public_id}/", "user"),
        SitePage("account", "/account/", "user"),
        SitePage("email", "/accounts/email/", "user"),
        SitePage("password-change", "/accounts/password/change/", "user"),
        SitePage("staff-live-calls", "/staff/live-calls/", "staff"),
        SitePage("staff-reconciliation", "/staff/reconciliation/", "staff"),
        SitePage("staff-call", f"/staff/calls/{call.public_id}/", "staff"),
        SitePage("admin-index", "/admin/", "staff"),
        SitePage("admin-users", "/admin/accounts/user/", "staff"),
        SitePage("admin-grant", f"/admin/accounts/user/{user.pk}/grant-credits/", "staff"),
        SitePage("admin-purchases", "/admin/billing/purchase/", "staff"),
        SitePage("admin-calls", "/admin/realtime/realtimecall/", "staff"),
        SitePage("admin-flags", "/admin/realtime/flag/", "staff"),
    ]
    return Site(user_email=user.email, staff_email=staff.email, pages=pages)


def sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))


def axe_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated over the DevTools protocol, not added as a <script>: the pages' CSP allows
        # only their own scripts, and the check must not need it loosened.
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS
    )
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "targets": [", ".join(node["target"]) for node in v["nodes"][:5]]}
        for v in result["violations"] if v["impact"] in BLOCKING
    ]
