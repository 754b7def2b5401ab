"""Staff dashboard: reported vs metered tokens per hour, revenue vs OpenAI cost per day, open flags."""

from datetime import UTC, date, datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import F, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.shortcuts import render
from django.utils import timezone

from sessions.models import RealtimeCall, TokenCounts, UsageRecord
from sessions.reconciliation.models import CostBucket, Flag, FlagStatus, UsageBucket
from sessions.reconciliation.reconcile import scope_q

MAX_DAYS = 92


class PeriodForm(forms.Form):
    """The days shown (UTC, both included). Empty: the last three days."""

    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("since", "The first day comes after the last one.")
        return cleaned


def _period(since_day: date | None, until_day: date | None) -> tuple[datetime, datetime]:
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    until = (
        datetime(until_day.year, until_day.month, until_day.day, tzinfo=UTC) + timedelta(days=1)
        if until_day
        else today + timedelta(days=1)
    )
    since = (
        datetime(since_day.year, since_day.month, since_day.day, tzinfo=UTC)
        if since_day
        else until - timedelta(days=2)
    )
    if since >= until:
        since = until - timedelta(days=1)
    return max(since, until - timedelta(days=MAX_DAYS)), until


def hourly_tokens(since: datetime, until: datetime) -> dict:
    reported = dict(
        UsageBucket.objects.filter(scope_q(), start_time__gte=since, start_time__lt=until)
        .annotate(hour=TruncHour("start_time"))
        .values("hour")
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")))
        .order_by("hour")
        .values_list("hour", "tokens")
    )
    metered_expr = sum(F(f"{name}_tokens") for name in TokenCounts.CLASSES)
    metered = dict(
        UsageRecord.objects.filter(at__gte=since, at__lt=until)
        .annotate(hour=TruncHour("at"))
        .values("hour")
        .annotate(metered_tokens=Sum(metered_expr))  # not `tokens`: UsageRecord has a property of that name
        .order_by("hour")
        .values_list("hour", "metered_tokens")
    )
    hours, t = [], since
    while t < until:
        hours.append(t)
        t += timedelta(hours=1)
    return {
        "x": [int(h.timestamp()) for h in hours],
        "reported": [int(reported.get(h) or 0) for h in hours],
        "metered": [int(metered.get(h) or 0) for h in hours],
    }


def daily_money(since: datetime, until: datetime) -> dict:
    revenue = dict(
        RealtimeCall.objects.filter(ended_at__gte=since, ended_at__lt=until, credits_charged__isnull=False)
        .annotate(day=TruncDay("ended_at"))
        .values("day")
        .annotate(credits=Sum("credits_charged"))
        .order_by("day")
        .values_list("day", "credits")
    )
    cost = dict(
        CostBucket.objects.filter(start_time__gte=since, start_time__lt=until)
        .annotate(day=TruncDay("start_time"))
        .values("day")
        .annotate(amount=Sum("amount_microusd"))
        .order_by("day")
        .values_list("day", "amount")
    )
    days, d = [], since
    while d < until:
        days.append(d)
        d += timedelta(days=1)
    per_usd = settings.REALTIME_CREDITS_PER_USD
    revenue_usd = [round(int(revenue.get(d) or 0) / per_usd, 4) for d in days]
    cost_usd = [round(int(cost.get(d) or 0) / 1e6, 4) for d in days]
    return {
        "x": [int(d.timestamp()) for d in days],
        "revenue_credits": [int(revenue.get(d) or 0) for d in days],
        "revenue_usd": revenue_usd,
        "cost_usd": cost_usd,
        "margin_usd": [round(r - c, 4) for r, c in zip(revenue_usd, cost_usd, strict=True)],
    }


@staff_member_required
def dashboard(request):
    form = PeriodForm(request.GET)
    # A date that cannot be (2026-13-45) or an inverted range is the staff member's to fix: the
    # page says so under the field (400) and shows the default period meanwhile.
    valid = form.is_valid()
    since, until = _period(*((form.cleaned_data.get("since"), form.cleaned_data.get("until")) if valid else (None, None)))
    money = daily_money(since, until)
    flags = (
        Flag.objects.filter(status__in=[FlagStatus.OPEN, FlagStatus.ACKNOWLEDGED])
        .select_related("user", "call")
        .order_by("-severity", "-window_start")[:100]
    )
    return render(
        request,
        "reconciliation/dashboard.html",
        {
            "form": form,
            "since": since,
            "until_day": until - timedelta(days=1),
            "tokens": hourly_tokens(since, until),
            "money": money,
            "flags": flags,
            "days": list(
                zip(
                    [datetime.fromtimestamp(ts, tz=UTC).date() for ts in money["x"]],
                    money["revenue_credits"],
                    money["revenue_usd"],
                    money["cost_usd"],
                    money["margin_usd"],
                    strict=True,
                )
            ),
            "credits_per_usd": settings.REALTIME_CREDITS_PER_USD,
        },
        status=200 if valid else 400,
    )
