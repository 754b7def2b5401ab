"""Findings become Flag rows for staff: upserted by natural key, high ones mailed once.

A finding's per-minute evidence is keyed by minute and merged into the flag's, so re-running a
window, splitting it in pieces, or finishing a run that was killed half-way writes the same values
and no new row. A re-run never touches status, reviewer or notes.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from sessions.models import Flag, FlagKind, FlagStatus, Severity
from sessions.reconciliation import locks

MAX_EVIDENCE_MINUTES = 720

_RANK: dict[str, int] = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}


@dataclass
class Finding:
    kind: str
    severity: str
    natural_key: str
    summary: str
    model: str = ""
    project_id: str = ""
    api_key_id: str = ""
    attribution: str = ""
    call_id: int | None = None
    user_id: int | None = None
    minutes: dict = field(default_factory=dict)  # iso minute -> figures (merged by key on re-run)
    extra: dict = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    reported: int = 0
    metered: int = 0


@dataclass
class Upserted:
    """What one upsert wrote: flags created, flags whose fields changed, and every flag it touched."""

    created: int = 0
    updated: int = 0
    flags: list[int] = field(default_factory=list)


def upsert(findings: list[Finding]) -> Upserted:
    """Write findings as flags in one transaction (nested in the caller's, if any): upserted by
    natural key, evidence merged by minute, severity never lowered, review fields never touched.
    High-severity open flags mail staff once, after commit (`notify_staff`).

    Safe against concurrent runs over overlapping windows (the periodic reconcile, a manual one, the
    key-mode check): missing flags are created first, in natural-key order, each in a savepoint (a
    unique-key conflict means another run created it meanwhile: it is then merged into like any
    existing flag); then the existing ones are locked in primary-key order (`locks.flags_for_update`) and
    merged. So no two runs wait on each other in a cycle, and the result is the same as running
    them one after the other."""
    done = Upserted()
    if not findings:
        return done
    now = timezone.now()
    notify: list[int] = []
    with transaction.atomic():
        by_key: dict[str, Flag] = {}
        created: set[int] = set()  # findings (by position) written as new flags
        wanted = {x.natural_key for x in findings}
        present = set(Flag.objects.filter(natural_key__in=wanted).values_list("natural_key", flat=True))
        first: dict[str, int] = {}  # natural key -> position of its first finding
        for index, finding in enumerate(findings):
            first.setdefault(finding.natural_key, index)
        for key in sorted(wanted - present):
            finding = findings[first[key]]
            try:
                with transaction.atomic():
                    by_key[key] = Flag.objects.create(
                        natural_key=key, first_seen_at=now, **_fields(finding, None, now)
                    )
            except IntegrityError:
                if not Flag.objects.filter(natural_key=key).exists():
                    raise  # not the natural key: a real error
                continue  # created by a concurrent run since: merged into below
            created.add(first[key])
            done.created += 1
        by_key.update(locks.flags_for_update(natural_keys=sorted(wanted - by_key.keys())))
        for index, finding in enumerate(findings):
            flag = by_key.get(finding.natural_key)
            if flag is None:  # deleted (by staff) since it was looked up: written anew
                flag = by_key[finding.natural_key] = Flag.objects.create(
                    natural_key=finding.natural_key, first_seen_at=now, **_fields(finding, None, now)
                )
                done.created += 1
            elif index not in created:
                fields = _fields(finding, flag, now)
                changed = [
                    name
                    for name, value in fields.items()
                    if name != "last_seen_at" and getattr(flag, name) != value
                ]
                for name, value in fields.items():
                    setattr(flag, name, value)
                flag.save(update_fields=[*fields])
                done.updated += bool(changed)
            if flag.pk not in done.flags:
                done.flags.append(flag.pk)
            if flag.severity == Severity.HIGH and flag.notified_at is None and flag.status == FlagStatus.OPEN:
                notify.append(flag.pk)
        if notify:
            transaction.on_commit(lambda: notify_staff(notify))
    return done


def _fields(finding: Finding, flag: Flag | None, now: datetime) -> dict:
    """The flag's fields once `finding` is merged into `flag` (None: a new flag)."""
    evidence = dict(flag.evidence) if flag else {}
    minutes = dict(evidence.get("minutes") or {})
    minutes.update(finding.minutes)
    if len(minutes) > MAX_EVIDENCE_MINUTES:
        minutes = dict(sorted(minutes.items())[-MAX_EVIDENCE_MINUTES:])
    evidence.update(finding.extra)
    if minutes:
        evidence["minutes"] = dict(sorted(minutes.items()))
        keys = sorted(minutes)
        start = datetime.fromisoformat(keys[0])
        end = datetime.fromisoformat(keys[-1]) + timedelta(minutes=1)  # keys are minute starts
        if flag:  # the window only grows: minutes kept from earlier runs still count
            start, end = min(start, flag.window_start), max(end, flag.window_end)
        reported = sum(m.get("reported", 0) for m in minutes.values())
        metered = sum(m.get("metered", 0) for m in minutes.values())
        if finding.kind == FlagKind.OUTSIDE_WINDOW:
            # Totals come from the merged minutes: a flag may span chunks and runs.
            evidence["tokens_after_window"] = reported
    else:
        assert finding.window is not None, "a finding without minutes names its window"
        start, end = finding.window
        reported, metered = finding.reported, finding.metered
    severity = finding.severity
    if flag and _RANK[flag.severity] > _RANK[severity]:
        severity = flag.severity  # a flag found in pieces (chunks, runs) keeps its worst minute
    return {
        "kind": finding.kind,
        "severity": severity,
        "window_start": start,
        "window_end": end,
        "project_id": finding.project_id,
        "api_key_id": finding.api_key_id,
        "model": finding.model,
        "attribution": finding.attribution,
        "call_id": finding.call_id,
        "user_id": finding.user_id,
        "reported_tokens": reported,
        "metered_tokens": metered,
        "summary": finding.summary[:500],
        "evidence": evidence,
        "last_seen_at": now,
    }


def notify_staff(flag_pks: list[int]) -> int:
    """Email staff about high-severity flags, once each (a conditional UPDATE claims the flag)."""
    sent = 0
    for pk in flag_pks:
        if not Flag.objects.filter(pk=pk, notified_at__isnull=True).update(notified_at=timezone.now()):
            continue
        flag = Flag.objects.get(pk=pk)
        if settings.STAFF_NOTIFY_EMAILS:
            send_mail(
                subject=f"[realtime_saas] {flag.get_kind_display()} ({flag.severity})",
                message=f"{flag.summary}\n\nWindow: {flag.window_start:%Y-%m-%d %H:%M} – "
                f"{flag.window_end:%Y-%m-%d %H:%M} UTC\nReview it in the admin: flag #{flag.pk}.",
                from_email=None,
                recipient_list=settings.STAFF_NOTIFY_EMAILS,
                fail_silently=True,
            )
            sent += 1
    return sent
