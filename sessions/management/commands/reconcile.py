"""`python manage.py reconcile --since … --until …`: reconcile a window (optionally import first)."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from sessions.openai_client import UpstreamError
from sessions.reconciliation import importer, reconcile


def _when(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"Not a date or time: {value!r} (use ISO 8601, e.g. 2026-11-24T10:00Z).")
        parsed = datetime(day.year, day.month, day.day)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Compare OpenAI's reported usage with our calls and metering over a window; raise flags."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="start (ISO 8601, UTC if no zone); default: 24 h ago")
        parser.add_argument("--until", help="end, exclusive; default: now")
        parser.add_argument(
            "--import",
            dest="do_import",
            action="store_true",
            help="pull the Usage and Costs APIs for the window first",
        )
        parser.add_argument("--chunk-size", type=int, default=None)

    def handle(self, *args, **options):
        until = _when(options["until"]) if options["until"] else timezone.now()
        since = _when(options["since"]) if options["since"] else until - timedelta(days=1)
        if since >= until:
            raise CommandError("--since must be before --until.")
        if options["do_import"]:
            if not settings.OPENAI_ADMIN_KEY:
                raise CommandError(
                    "--import needs OPENAI_ADMIN_KEY (an OpenAI admin key, for the Usage and Costs APIs); "
                    "without it, reconcile what was imported or uploaded already."
                )
            try:
                usage = importer.import_usage(since=since, until=until)
                costs = importer.import_costs(since=since, until=until)
            except UpstreamError as exc:
                raise CommandError(f"--import could not reach OpenAI's Usage and Costs APIs: {exc}") from None
            self.stdout.write(f"imported {usage.buckets} usage and {costs.buckets} cost bucket(s)")
        result = reconcile.reconcile(since=since, until=until, chunk_size=options["chunk_size"])
        self.stdout.write(
            f"reconciled {result.since:%Y-%m-%d %H:%M} → {result.until:%Y-%m-%d %H:%M} UTC: "
            f"{result.minutes} minute(s) with usage, {result.windows} call window(s), "
            f"{result.created} flag(s) created, {result.updated} updated"
        )
