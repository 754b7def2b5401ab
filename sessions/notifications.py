"""The email a user gets when a call of theirs was ended because their credits ran out."""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from django.db import transaction

from billing.models import Wallet
from realtime_saas.emails import send_to_user
from sessions import presenters
from sessions.models import RealtimeCall

logger = logging.getLogger(__name__)


def call_cut_off(call: RealtimeCall) -> None:
    """`call` was just settled as cut off for credits: its email goes out after the commit."""
    transaction.on_commit(partial(send_call_cut_off_email.delay, call.pk))


def _minutes_and_seconds(seconds: int | None) -> str:
    minutes, rest = divmod(seconds or 0, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


@shared_task(name="sessions.send_call_cut_off", soft_time_limit=30, time_limit=45)
def send_call_cut_off_email(call_pk: int) -> None:
    call = RealtimeCall.objects.select_related("user", "assistant").get(pk=call_pk)
    balance = Wallet.objects.filter(user_id=call.user_id).values_list("balance", flat=True).first() or 0
    try:
        send_to_user(to=call.user.email, template="call_cut_off", context={
            "assistant_name": call.assistant.name, "started_at": call.started_at or call.created_at,
            "duration": _minutes_and_seconds(presenters.duration_seconds(call)),
            "credits_charged": call.credits_charged, "balance": balance, "call_id": call.public_id,
        })
    except Exception:
        logger.exception("cut-off email for call %s could not be sent", call.public_id)
