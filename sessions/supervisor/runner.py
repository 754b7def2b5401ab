"""The asyncio supervisor: claims calls by lease, attaches to their sidebands, meters, enforces,
settles. One process, one event loop, one task per watched call (no thread per call); database
work runs in a small thread pool (`SupervisorConf.db_threads`).

Enforcement is decided in memory, from the same prices and formula the database uses, so the
hangup leaves as soon as the exhausting `response.done` is read; the database write follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.utils import timezone

from realtime_saas import logging as log_fields
from realtime_saas import metrics
from realtime_saas.live import apush, staff_group, user_group
from sessions import openai_client, presenters
from sessions import policy as policy_rules
from sessions.models import (
    FINAL_STATES,
    CallMode,
    CallState,
    Cause,
    TokenCounts,
    UsageRecord,
    credits_for_cost,
)
from sessions.supervisor import store
from sessions.supervisor.conf import SupervisorConf

logger = logging.getLogger(__name__)

FAIL_CLOSED_DETAIL = "Not watched: the sideband did not attach within {grace:g} s, so the call was hung up."
LOST_DETAIL = "Not watched: the sideband was lost and could not be re-attached, so the call was hung up."
PRE_ATTACH_DETAIL = ("The conversation had items before the supervisor attached (the browser started a response "
                     "before it was watched), so the call was ended and flagged for staff.")

# Attaching (see CallWatcher._attach, Supervisor._claim_loop): a call nobody watched yet answers 404
# until its browser has connected (ICE/DTLS, normally well under a second after the start), so while
# it is that young the retries stay this close together; only an older call backs off further.
FRESH_CALL_SECONDS = 5.0
FRESH_RETRY_SECONDS = 0.25
# Users start calls in bursts: after a claim that found calls, look again this soon.
BUSY_POLL_SECONDS = 0.1


class CallWatcher:
    """Watches one call: attach (with backoff), configure, police, meter, enforce, settle. One task.

    Fail closed: whatever makes it stop watching a live call, it ends with a hangup request that
    OpenAI confirmed (or answered "no such call"), unless OpenAI itself closed the sideband cleanly
    (the call ended). Only then is the call settled. docs/supervisor.md lists every path.
    """

    def __init__(self, supervisor: Supervisor, snap: store.CallSnapshot) -> None:
        self.sup = supervisor
        self.snap = snap
        self.conf = supervisor.conf
        self.cost_microusd = snap.cost_microusd
        self.credits_used = snap.credits_used
        self.tokens = snap.tokens
        self.seen: set[str] = set()
        self.sideband: openai_client.Sideband | None = None
        self.enforcing: str | None = None  # the cause of our hangup, once decided
        self.ending_seen = snap.state == CallState.ENDING  # someone else hung it up
        self.hangup_task: asyncio.Task | None = None
        self.closing_deadline: float | None = None
        self.closed_by_openai = False  # the sideband closed cleanly: the call ended (proof)
        self.gone_if_not_found = False  # our hangup is a precaution: "no such call" means it ended by itself
        self.warning: str | None = None
        self.session_expired = False
        self.task: asyncio.Task | None = None
        self.claimed_mono = time.monotonic()
        self.last_push = 0.0
        self.base_payload: dict | None = None
        # Policy (issue 11): what the call may do, and what the supervisor saw it do.
        self.first_watch = not snap.was_attached  # this watcher is the first to see the call
        self.attached_once = snap.was_attached
        self.turned_on = False  # the supervisor's turn detection took effect
        self.known_items: set[str] = set()
        self.responses_created: set[str] = set()
        self.deviations = 0
        self.last_input = TokenCounts()
        self.last_output = TokenCounts()
        # A partial hold lowers the session's output limit as its credits run down (see _judge):
        # every limit the supervisor set is one the session may legitimately show.
        self.output_cap = self._policy_max_output()
        self.caps_sent: set[int] = {self.output_cap}
        self.confirmed_cap = self.output_cap  # in force at OpenAI (seen in a session.updated)
        self._event_seq = 0
        self._our_events: dict[str, str] = {}  # event_id -> what it was, to read OpenAI's errors about it
        self.enforce_mono: float | None = None  # when enforce() decided (enforcement latency metric)
        self.extending = False  # out of credits: growing the hold, or waiting for an auto top-up
        self.attached_by_us = False

    # --- decisions -------------------------------------------------------------------------

    def enforce(self, cause: str, detail: str = "", *, gone_if_not_found: bool = False) -> None:
        """Hang up now (once), recording why."""
        if self.enforcing is not None:
            return
        self.enforcing = cause
        self.gone_if_not_found = gone_if_not_found
        self.sup.stats["enforced:" + cause] += 1
        self.enforce_mono = time.monotonic()
        self.hangup_task = asyncio.get_running_loop().create_task(self._hangup(cause, detail))

    def on_status(self, status: store.CallStatus) -> None:
        """Called by the supervisor's check loop with the call's row as the database sees it."""
        if status.state in FINAL_STATES:
            self.stop()
            return
        if status.user_suspended:
            self.enforce(Cause.USER_SUSPENDED)
        elif status.state == CallState.ENDING and not self.ending_seen:
            # The user or staff hung up through sessions.services (which asked OpenAI already);
            # ask again ourselves so the call is down within our bound even if that failed.
            self.ending_seen = True
            if self.enforcing is None:
                self.enforcing = ""
                self.hangup_task = asyncio.get_running_loop().create_task(self._hangup(None, ""))
        now = timezone.now()
        if now >= status.expected_end_at:
            self.enforce(Cause.TIME_LIMIT)
        elif (status.expected_end_at - now).total_seconds() <= self.conf.warn_seconds:
            self.warn("time")

    def warn(self, why: str) -> None:
        if self.warning is not None or self.enforcing is not None:
            return
        self.warning = why
        self.sup.spawn(self._warn(why))

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # --- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        # This task's log lines (and the tasks it starts) name the call (LOG_FORMAT=json).
        log_fields.call_public_id.set(self.snap.public_id)
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease goes back (expired now): this or another supervisor claims the call again
            # at its next poll, so it is not left unwatched.
            logger.exception("supervisor: watcher of call %s failed; releasing it", self.snap.public_id)
            await self.sup.db(store.release, owner=self.sup.owner, pks=[self.snap.pk])
        finally:
            if self.sideband is not None:
                await self.sideband.close()
            if self.hangup_task is not None and not self.hangup_task.done():
                self.hangup_task.cancel()
            self.sup.watchers.pop(self.snap.pk, None)

    def _observe_attach(self, *, first: bool) -> None:
        """Attach latency: a new proxy call's from its start (what its user waits for), anything else
        (key mode, a takeover) from our claim."""
        if first and self.snap.mode == CallMode.PROXY and self.snap.started_at is not None:
            seconds = (timezone.now() - self.snap.started_at).total_seconds()
        else:
            seconds = time.monotonic() - self.claimed_mono
        metrics.supervisor().attach_latency.labels(kind="first" if first else "takeover").observe(max(seconds, 0.0))

    def _grace_deadline(self) -> float:
        """Monotonic deadline for the first attach of this watcher (fail closed after it).

        A new proxy call has the grace from its start. A call another supervisor watched before
        (a takeover) gets a fresh grace from our claim: its age says nothing about our attach.
        """
        grace = self.conf.attach_grace_seconds
        if self.snap.mode == CallMode.PROXY and self.snap.started_at is not None and not self.snap.was_attached:
            age = (timezone.now() - self.snap.started_at).total_seconds()
            return time.monotonic() + max(grace - age, 0.0)
        return self.claimed_mono + grace  # key mode: from when we learnt its call id; takeovers

    async def _run(self) -> None:
        attached_ever = self.snap.was_attached
        deadline = self._grace_deadline()
        while True:
            sideband = await self._attach(attached_ever=attached_ever, deadline=deadline)
            if sideband is None:
                break
            self.sideband = sideband
            first = not attached_ever
            attached_ever = self.attached_once = True
            self.sup.stats["attached"] += 1
            if not self.attached_by_us:
                self.attached_by_us = True
                self._observe_attach(first=first)
            # The policy first, then the database: the call waits for our turn detection.
            configured = await self._configure(sideband, greet=first and self.snap.greeting)
            await self.sup.attach_writer.mark(pk=self.snap.pk, first=first, detail=configured)
            self.push(force=True)
            self._judge()
            try:
                clean = await self._read(sideband)
            finally:
                self.sideband = None
                await sideband.close()
            if clean:
                break
            self.sup.stats["dropped"] += 1
            self.first_watch = False  # what happens while we re-attach is not the browser's doing
            await self.sup.db(store.record_event, pk=self.snap.pk, kind=store.EVENT_SIDEBAND_LOST,
                              detail="Sideband dropped; re-attaching.")
            deadline = time.monotonic() + self.conf.attach_grace_seconds
        if self.hangup_task is None and not self.closed_by_openai:
            # We stop watching without proof that the call ended: hang it up (fail closed).
            self.sup.stats["fail_closed"] += 1
            if self.ending_seen:  # the user's or staff's hangup, asked again until OpenAI confirms
                self.enforcing = ""
                self.hangup_task = asyncio.get_running_loop().create_task(self._hangup(None, ""))
            elif not attached_ever:
                self.enforce(Cause.NOT_WATCHED, FAIL_CLOSED_DETAIL.format(grace=self.conf.attach_grace_seconds))
            else:
                self.enforce(Cause.NOT_WATCHED, LOST_DETAIL, gone_if_not_found=True)
        if self.hangup_task is not None:
            await self.hangup_task
        await self._settle(attached_ever)

    async def _attach(self, *, attached_ever: bool, deadline: float) -> openai_client.Sideband | None:
        delay = self.conf.attach_backoff_initial
        gone_answers = 0
        while True:
            try:
                return await openai_client.connect_sideband(
                    self.sup.client, self.snap.openai_call_id, timeout=self.sup.connect_timeout
                )
            except openai_client.SidebandNotFound:
                self.sup.stats["attach_not_found"] += 1
                if self.enforcing is not None or self.ending_seen:
                    return None  # hung up: nothing left to watch
                if attached_ever:
                    gone_answers += 1
                    if gone_answers >= 3:
                        return None  # it was attachable before, so 404 now means it ended
            except openai_client.UpstreamError as exc:
                logger.info("supervisor: sideband of %s not reachable: %s", self.snap.public_id, exc.message)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(delay, remaining))
            cap = self.conf.attach_backoff_max
            if not attached_ever and self._age() < FRESH_CALL_SECONDS:
                cap = min(cap, FRESH_RETRY_SECONDS)  # its browser is still connecting
            delay = min(delay * 2, cap)

    def _age(self) -> float:
        """Seconds since the call started (since our claim when it has no start time)."""
        if self.snap.started_at is not None:
            return (timezone.now() - self.snap.started_at).total_seconds()
        return time.monotonic() - self.claimed_mono

    def _event_id(self, what: str) -> str:
        self._event_seq += 1
        event_id = f"event_rs{self.snap.pk}x{self._event_seq}"
        self._our_events[event_id] = what
        return event_id

    async def _configure(self, sideband: openai_client.Sideband, *, greet: bool) -> str:
        """Put the assistant's policy on the session (its turn detection on: the call was created
        with it off) and, on the first attach, ask for the greeting. Returns a timeline note."""
        policy = self.effective_policy()
        if not policy:
            return ""
        try:
            await sideband.send(policy_rules.restore_event(policy, event_id=self._event_id("configure")))
            if greet:
                await sideband.send(policy_rules.greeting_event(
                    instructions=self.snap.greeting_instructions, event_id=self._event_id("greeting")))
        except Exception:
            logger.info("supervisor: configuring %s failed", self.snap.public_id, exc_info=True)
            return ""
        if greet:
            return "Supervisor attached: turn detection on, greeting requested."
        return "Supervisor attached: the assistant's session settings re-applied."

    async def _read(self, sideband: openai_client.Sideband) -> bool:
        """Read events until the socket closes. True when the call ended (clean close, or our
        hangup's grace ran out); False when the sideband dropped and should be re-attached."""
        while True:
            if self.closing_deadline is not None and time.monotonic() >= self.closing_deadline:
                return True
            try:
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as
                # the event does, so a stopping supervisor kept reading (benchmarks/README "Shutdown").
                async with asyncio.timeout(1.0):
                    event = await sideband.recv()
            except TimeoutError:
                continue
            except openai_client.SidebandClosed as closed:
                if closed.clean and self.enforcing is None:
                    self.closed_by_openai = True
                return closed.clean or self.enforcing is not None
            await self._handle(event)

    async def _handle(self, event: dict) -> None:
        kind = event.get("type")
        if self.first_watch:
            self._check_history(event)
        if kind == "response.done":
            response = event.get("response") or {}
            response_id = response.get("id") or ""
            if (self.first_watch and response_id and response_id not in self.responses_created
                    and response_id not in self.seen):
                # Started before we watched (we saw no response.created): only a modified client
                # does that. It is metered below; the call ends and staff get a flag.
                self._deviation(f"A response started before the supervisor watched the call"
                                f"{self._excess_note(response)}; it was charged and the call ended.",
                                fatal=True, evidence={"response_id": response_id})
            usage = response.get("usage") or {}
            counts = TokenCounts.from_usage(usage)
            self.last_input = TokenCounts(text_in=counts.text_in, text_cached=counts.text_cached,
                                          audio_in=counts.audio_in, audio_cached=counts.audio_cached)
            self.last_output = TokenCounts(text_out=counts.text_out, audio_out=counts.audio_out)
            await self._meter(response_id or event.get("event_id") or "", usage, UsageRecord.Kind.RESPONSE)
        elif kind == "response.created":
            response = event.get("response") or {}
            response_id = response.get("id") or ""
            self.responses_created.add(response_id)
            # Judged against the limit in force when it was created: one we lowered a moment ago
            # may not have reached OpenAI yet.
            limit = {**self.snap.policy, "max_output_tokens": self.confirmed_cap} if self.snap.policy else {}
            excess = policy_rules.response_excesses(limit, response) if limit else []
            if excess and self.sideband is not None:
                await self._send({"type": "response.cancel", "response_id": response_id}, "cancel")
                self._deviation(f"A response asked for more than the assistant allows "
                                f"({policy_rules.describe(excess)}); it was cancelled.")
        elif kind == "session.updated" and self.snap.policy:
            await self._police_session(event.get("session") or {})
        elif kind == "conversation.item.input_audio_transcription.completed":
            usage = event.get("usage") or {}
            if usage.get("type", "tokens") == "tokens":
                details = usage.get("input_token_details") or {}
                tokens = TokenCounts(
                    text_in=int(details.get("text_tokens") or 0), audio_in=int(details.get("audio_tokens") or 0),
                    text_out=int(usage.get("output_tokens") or 0),
                )
                key = f"{event.get('item_id')}:{event.get('content_index', 0)}:transcription"
                await self._meter(key, None, UsageRecord.Kind.TRANSCRIPTION, tokens=tokens)
        elif kind == "error":
            error = event.get("error") or {}
            if error.get("code") == "session_expired":
                self.session_expired = True
            what = self._our_events.get(error.get("event_id") or "")
            if what == "configure":
                # OpenAI refused to put the policy back (e.g. the voice, once audio was played).
                self._deviation(f"The assistant's settings could not be restored: {error.get('message', '')}",
                                fatal=True)

    def _excess_note(self, response: dict) -> str:
        excess = policy_rules.response_excesses(self.snap.policy, response) if self.snap.policy else []
        return f", asking for more than the assistant allows ({policy_rules.describe(excess)})" if excess else ""

    def _check_history(self, event: dict) -> None:
        """On a call nobody watched before us, every item must be one we saw added: an item that
        refers to an unknown previous item means the conversation had items before we attached,
        i.e. the browser had a response (or input) we could not meter. End the call, flag it."""
        etype = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        item_id = item.get("id") or event.get("item_id")
        previous = event.get("previous_item_id")
        chained = etype in ("conversation.item.added", "conversation.item.done", "conversation.item.created",
                            "input_audio_buffer.committed")
        if chained and previous and previous not in self.known_items and self.enforcing is None:
            self.sup.stats["pre_attach"] += 1
            self._deviation(PRE_ATTACH_DETAIL, fatal=True,
                            evidence={"unknown_previous_item_id": previous, "event": etype})
        if item_id and (chained or etype in ("response.output_item.added", "response.output_item.done")):
            self.known_items.add(item_id)

    async def _police_session(self, session: dict) -> None:
        policy = self.effective_policy()
        td_policy = (policy.get("audio") or {}).get("input", {}).get("turn_detection") or {}
        td = ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
        if session.get("max_output_tokens") in self.caps_sent:
            # A limit we set (an echo may trail a newer one): in force now, and no deviation.
            self.confirmed_cap = session["max_output_tokens"]
            session = {**session, "max_output_tokens": policy.get("max_output_tokens")}
        deviations = policy_rules.session_deviations(policy, session, turned_on=self.turned_on)
        if not deviations and isinstance(td, dict) and td and all(td.get(k) == v for k, v in td_policy.items()):
            self.turned_on = True
        if not deviations:
            return
        await self._send(policy_rules.restore_event(policy, event_id=self._event_id("configure")), None)
        self._deviation(f"The browser changed the assistant's {policy_rules.describe(deviations)}; "
                        "the assistant's settings were put back.")

    def _deviation(self, detail: str, *, fatal: bool = False, evidence: dict | None = None) -> None:
        """Record a deviation from the policy; a repeat in the same call (or a fatal one) hangs up
        with cause `policy_violation` and raises a high-severity flag for staff."""
        self.deviations += 1
        self.sup.stats["policy_deviations"] += 1
        logger.info("supervisor: call %s deviates from its policy: %s", self.snap.public_id, detail)
        self.sup.spawn(self.sup.db(store.record_event, pk=self.snap.pk, kind=store.EVENT_POLICY_DEVIATION,
                                   detail=detail))
        if self.enforcing is not None or not (fatal or self.deviations >= 2):
            return
        why = detail if fatal else f"The assistant's settings were changed from the browser again: {detail}"
        self.enforce(Cause.POLICY_VIOLATION, why)
        self.sup.spawn(self.sup.db(
            store.flag_policy_violation, pk=self.snap.pk,
            summary=f"Call {self.snap.public_id} ended for a policy violation: {why}",
            evidence={"deviations": self.deviations, **(evidence or {})},
        ))

    async def _send(self, event: dict, what: str | None) -> None:
        if self.sideband is None:
            return
        if what is not None:
            event = {**event, "event_id": self._event_id(what)}
        try:
            await self.sideband.send(event)
        except Exception:
            logger.info("supervisor: sending %s to %s failed", event.get("type"), self.snap.public_id, exc_info=True)

    async def _meter(self, response_id: str, usage: dict | None, kind: str, tokens: TokenCounts | None = None) -> None:
        if not response_id or response_id in self.seen:
            self.sup.stats["replayed"] += bool(response_id)
            return
        self.seen.add(response_id)
        self.sup.stats["metered"] += 1
        tokens = tokens if tokens is not None else TokenCounts.from_usage(usage or {})
        price = self.snap.price
        cost = price.cost_microusd(tokens) if price is not None else 0
        if price is None:
            logger.error("supervisor: no price for model %s (call %s)", self.snap.model, self.snap.public_id)
        # Decide in memory, so the hangup never waits for the database; the row is written by the
        # supervisor's batch writer, which then corrects these figures from the database's sums.
        self.cost_microusd += cost
        self.tokens = TokenCounts(**{n: getattr(self.tokens, n) + getattr(tokens, n) for n in TokenCounts.CLASSES})
        self.credits_used = credits_for_cost(self.cost_microusd, markup_percent=self.snap.markup_percent)
        self._judge()
        self.sup.writer.add(store.UsageRow(pk=self.snap.pk, response_id=response_id, kind=kind, tokens=tokens,
                                           cost_microusd=cost, at=timezone.now()))
        self.push()

    def on_written(self, credits_used: int, cost_microusd: int) -> None:
        """The database's totals after a batch (they include what an earlier supervisor metered)."""
        if credits_used > self.credits_used:
            self.credits_used, self.cost_microusd = credits_used, cost_microusd
            self._judge()

    def _policy_max_output(self) -> int:
        value = self.snap.policy.get("max_output_tokens") if self.snap.policy else None
        return int(value) if isinstance(value, int) else 4096  # "inf": the model's own cap (reference §5.2)

    def _next_input_microusd(self) -> int:
        """What the next response's input will cost at least: a response re-reads the whole
        conversation (reference §5.1), i.e. the last response's input as it was priced, plus that
        response's output, now input, uncached."""
        price = self.snap.price
        last_in, last_out = self.last_input, self.last_output
        total = sum(getattr(last_in, name) * price.price_of(name) for name in TokenCounts.CLASSES if
                    name.endswith(("_in", "_cached")))
        total += last_out.text_out * price.text_in_microusd_per_mtok + last_out.audio_out * price.audio_in_microusd_per_mtok
        return -(-total // 1_000_000)

    def output_budget(self) -> int | None:
        """A partial hold: how many output tokens one more response can afford before the metered
        cost reaches what the hold pays for. None for a full hold (or without a price)."""
        price = self.snap.price
        if not self.snap.partial_hold or price is None:
            return None
        rate = (100 + self.snap.markup_percent) * settings.REALTIME_CREDITS_PER_USD
        affordable_microusd = self.snap.credits_held * 100 * 1_000_000 // rate
        left = affordable_microusd - self.cost_microusd - self._next_input_microusd()
        out_price = max(price.text_out_microusd_per_mtok, price.audio_out_microusd_per_mtok)
        if out_price <= 0:
            return self._policy_max_output()
        return max(left, 0) * 1_000_000 // out_price

    def _judge(self) -> None:
        """Credits. A full hold ends the call when the metered credits reach it (the last response
        may overshoot it: that is charged too). A partial hold ends it when the credits left cannot
        pay for one more response of `min_response_tokens`, and until then lowers the session's
        `max_output_tokens` to what they can pay for, so no response can overshoot (issue 11)."""
        held = self.snap.credits_held
        budget = self.output_budget()
        if budget is None:
            if self.credits_used >= held:
                self.enforce(Cause.CREDITS_EXHAUSTED)
                return
        elif budget < self.conf.min_response_tokens:
            self._out_of_credits(budget)
            return
        elif budget < self.output_cap:
            self.output_cap = budget
            self.caps_sent.add(budget)
            if self.sideband is not None:
                self.sup.spawn(self._send({"type": "session.update", "session": {
                    "type": "realtime", "max_output_tokens": budget}}, "cap"))
        if held - self.credits_used <= held * self.conf.warn_fraction:
            self.warn("credits")

    def _out_of_credits(self, budget: int) -> None:
        """A partial hold is used up: before cutting the call, grow the hold from credits that
        arrived meanwhile (an auto top-up), and while a top-up is on its way wait for it up to
        REALTIME_TOPUP_GRACE_SECONDS, the responses kept to what the hold still covers."""
        if self.extending or self.enforcing is not None:
            return
        self.extending = True
        if budget < self.output_cap:
            self._lower_cap(max(budget, 1))
        self.sup.spawn(self._extend_or_cut())

    def _lower_cap(self, cap: int) -> None:
        self.output_cap = cap
        self.caps_sent.add(cap)
        if self.sideband is not None:
            self.sup.spawn(self._send({"type": "session.update", "session": {
                "type": "realtime", "max_output_tokens": cap}}, "cap"))

    async def _extend_or_cut(self) -> None:
        deadline = time.monotonic() + settings.REALTIME_TOPUP_GRACE_SECONDS
        try:
            while self.enforcing is None:
                added = await self.sup.db(store.extend_call_hold, pk=self.snap.pk)
                if added:
                    self.snap.credits_held += added
                    if self.base_payload is None:
                        self.base_payload = dict(self.snap.payload or {})
                    self.base_payload["credits_held"] = self.snap.credits_held  # the page's "of N"
                    self.sup.stats["holds_extended"] += 1
                    self.extending = False
                    budget = self.output_budget()
                    if budget is not None and budget >= self.conf.min_response_tokens:
                        # The credits allow longer responses again: raise the limit we lowered.
                        cap = min(budget, self._policy_max_output())
                        if cap > self.output_cap:
                            self._lower_cap(cap)
                    self._judge()
                    self.push(force=True)
                    return
                if time.monotonic() >= deadline or not await self.sup.db(store.top_up_coming, pk=self.snap.pk):
                    break
                await asyncio.sleep(0.5)
        except Exception:
            logger.exception("supervisor: extending the hold of %s failed", self.snap.public_id)
        self.extending = False
        self.enforce(Cause.CREDITS_EXHAUSTED)

    def effective_policy(self) -> dict:
        """The policy with the output limit the credits allow now (a partial hold lowers it)."""
        if not self.snap.policy or self.output_cap >= self._policy_max_output():
            return self.snap.policy
        return {**self.snap.policy, "max_output_tokens": self.output_cap}

    async def _hangup(self, cause: str | None, detail: str) -> None:
        """REST hangup, retried with backoff until OpenAI confirms it (200, or 404: the call is
        gone), then the database. A call is never settled while nobody knows it ended."""
        delay = 0.2
        failed_once = False
        while True:
            try:
                await openai_client.ahangup(self.sup.client, self.snap.openai_call_id)
                break
            except openai_client.CallNotFound:
                if self.gone_if_not_found:
                    # It had ended by itself while we could not watch: settle it as closed.
                    self.enforcing = ""
                    cause = None
                break
            except openai_client.UpstreamError as exc:
                self.sup.stats["hangup_retries"] += 1
                if not failed_once and cause is not None:
                    failed_once = True
                    await self.sup.db(store.begin_ending, pk=self.snap.pk, cause=cause, detail=detail,
                                      hangup_error=exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.sup.stats["hangups"] += 1
        sup_metrics = metrics.supervisor()
        sup_metrics.hangups.labels(cause=self.enforcing or "requested").inc()  # "": asked by the user or staff
        if self.enforce_mono is not None and self.enforcing:
            sup_metrics.enforcement_latency.labels(cause=self.enforcing).observe(time.monotonic() - self.enforce_mono)
        self.closing_deadline = time.monotonic() + self.conf.ending_timeout_seconds
        if cause is not None:
            await self.sup.db(store.begin_ending, pk=self.snap.pk, cause=cause, detail=detail, hangup_error=None)

    async def _settle(self, attached_ever: bool) -> None:
        await self.sup.writer.drain()  # every metered response of this call is in the database
        cause = self.enforcing or Cause.CALL_CLOSED
        detail = ""
        if self.session_expired and not self.enforcing:
            detail = "OpenAI ended the call at its maximum session length."
        elif cause == Cause.NOT_WATCHED:
            detail = LOST_DETAIL if attached_ever else FAIL_CLOSED_DETAIL.format(grace=self.conf.attach_grace_seconds)
        # A proxy call is charged what was metered (nothing, if it never attached: reconciliation
        # sees what OpenAI billed). A key-mode call we could never watch pays its full hold.
        metered = attached_ever or self.snap.mode == CallMode.PROXY
        call = await self.sup.db(store.finish, pk=self.snap.pk, cause=cause, metered=metered, detail=detail)
        self.sup.stats["settled"] += 1
        logger.info("supervisor: call %s %s (%s), %s credits", call.public_id, call.state, call.end_reason,
                    call.credits_charged)

    async def _warn(self, why: str) -> None:
        message = "Credits are running out." if why == "credits" else "The call is about to reach its time limit."
        await self.sup.db(store.record_event, pk=self.snap.pk, kind=store.EVENT_WARNING, detail=message)
        # The assistant's own message wins; the setting is the default for assistants without one.
        wrap_up = self.snap.wrap_up_message or self.conf.wrap_up_message
        if wrap_up and self.sideband is not None:
            try:
                await self.sideband.send({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "system",
                    "content": [{"type": "input_text", "text": wrap_up}]}})
            except Exception:
                logger.info("supervisor: wrap-up message to %s failed", self.snap.public_id, exc_info=True)
        self.push(force=True)

    def push(self, *, force: bool = False) -> None:
        if not self.conf.live_push:
            return
        now = time.monotonic()
        if not force and now - self.last_push < 1.0:
            return
        self.last_push = now
        self.sup.spawn(self._push())

    async def _push(self) -> None:
        if self.base_payload is None:
            self.base_payload = self.snap.payload or {}
        data = {
            **self.base_payload,
            "tokens": self.tokens.as_dict(),
            "cost_microusd": self.cost_microusd,
            "live": True,
            "watched": self.attached_once,
            "credits_used": self.credits_used,
            "seconds_left": presenters.seconds_to_end(self.snap.expected_end_at),
            "warning": self.warning,
        }
        try:
            await apush(user_group(self.snap.user_id), "call", data)
            await apush(staff_group(), "call", data)
        except Exception:
            logger.debug("supervisor: live push failed", exc_info=True)


class MeterWriter:
    """Writes metered rows in batches (one transaction per batch, whatever its size), so the
    database keeps up with thousands of responses a second and no watcher waits for it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.pending: list[store.UsageRow] = []
        self.added = 0
        self.written = 0
        self.max_batch = 5000
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()

    def add(self, row: store.UsageRow) -> None:
        self.pending.append(row)
        self.added += 1
        self._wake.set()

    async def drain(self) -> None:
        """Wait until everything added so far is written."""
        target = self.added
        async with self._progress:
            await self._progress.wait_for(lambda: self.written >= target)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.05)  # let more rows join the batch: fewer, larger transactions
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                while True:
                    try:
                        totals = await self.sup.db(store.meter_batch, rows=batch)
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        logger.exception("supervisor: writing %d usage rows failed; retrying", len(batch))
                        await asyncio.sleep(1.0)
                self.sup.stats["batches"] += 1
                for pk, (credits_used, cost) in totals.items():
                    watcher = self.sup.watchers.get(pk)
                    if watcher is not None:
                        watcher.on_written(credits_used, cost)
                async with self._progress:
                    self.written += len(batch)
                    self._progress.notify_all()


class AttachWriter:
    """Records attaches (`store.mark_attached`) in batches: every call attached within the same
    few milliseconds in one transaction, as a burst of arrivals or a takeover attaches them, instead
    of one transaction (and ~1.6 ms of ORM work under the GIL) per call. `mark` returns once its
    call's row is written, or raises as `store.mark_attached` would."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.pending: list[tuple[tuple[int, bool, str], asyncio.Future]] = []
        self._wake = asyncio.Event()

    async def mark(self, *, pk: int, first: bool, detail: str) -> None:
        done = asyncio.get_running_loop().create_future()
        self.pending.append(((pk, first, detail), done))
        self._wake.set()
        await done

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.02)  # let the attaches of the same moment join the batch
            batch, self.pending = self.pending, []
            try:
                await self.sup.db(store.mark_attached_batch, items=[item for item, _ in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                # One call at a time, so only a call whose row cannot be written fails (its
                # watcher then gives the call back, as before batching).
                for (pk, first, detail), done in batch:
                    try:
                        await self.sup.db(store.mark_attached, pk=pk, first=first, detail=detail)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        if not done.done():
                            done.set_exception(exc)
                    else:
                        if not done.done():
                            done.set_result(None)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


class Supervisor:
    """Many calls, one loop. `await Supervisor().run(stop_event)`; any number may run side by side."""

    def __init__(self, *, owner: str | None = None, conf: SupervisorConf | None = None) -> None:
        self.conf = conf or SupervisorConf.from_settings()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.watchers: dict[int, CallWatcher] = {}
        self.stats: Counter = Counter()
        self.client = None
        self.connect_timeout = 10.0
        self._executor = ThreadPoolExecutor(self.conf.db_threads, thread_name_prefix="supervisor-db")
        # Claims and lease renewals get a thread of their own: queued behind a burst of metering
        # or settlement work they would let leases expire, and every call would change hands.
        self._control = ThreadPoolExecutor(1, thread_name_prefix="supervisor-lease")
        self._tasks: set[asyncio.Task] = set()
        self._wake: asyncio.Event | None = None
        self.writer: MeterWriter | None = None

    async def db(self, fn, /, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, **kwargs))

    async def db_control(self, fn, /, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._control, functools.partial(fn, **kwargs))

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def wake(self) -> None:
        """Look for new calls now (a notification arrived)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:

        stop = stop or asyncio.Event()
        self._wake = asyncio.Event()
        self.client = openai_client.async_client()
        self.connect_timeout = float(settings.OPENAI_TIMEOUT_SECONDS)
        logger.info("supervisor %s starting", self.owner)
        # Fewer, cheaper garbage collections: the long-lived objects (Django, the SDK, the
        # watchers' sockets) are moved out of the collector's way.
        gc.collect()
        gc.freeze()
        self.writer = MeterWriter(self)
        writer = self.spawn(self.writer.run())
        loops = [self.spawn(self._claim_loop()), self.spawn(self._check_loop())]
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            watchers = [w.task for w in self.watchers.values() if w.task is not None]
            for task in watchers:
                task.cancel()
            await asyncio.gather(*loops, *watchers, return_exceptions=True)
            if self.writer.pending:  # what was metered before the stop is kept
                with contextlib.suppress(Exception):
                    await self.db(store.meter_batch, rows=self.writer.pending)
            writer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await self.db(store.release, owner=self.owner)
            finally:
                await self.client.close()
                await self._close_db()
            logger.info("supervisor %s stopped", self.owner)

    async def _close_db(self) -> None:
        """Close each pool thread's database connection (a test database can then be dropped)."""
        loop = asyncio.get_running_loop()
        for executor, threads in ((self._executor, self.conf.db_threads), (self._control, 1)):
            barrier = threading.Barrier(threads)

            def close(barrier=barrier) -> None:
                connections.close_all()
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=5)

            await asyncio.gather(*(loop.run_in_executor(executor, close) for _ in range(threads)))
            executor.shutdown(wait=False)

    async def _claim_loop(self) -> None:
        # Watchers exist only once claimed here, so their attach writer is started first.
        self.attach_writer = AttachWriter(self)
        self.spawn(self.attach_writer.run())
        while True:
            try:
                snaps = await self.db_control(store.claim, owner=self.owner, lease_seconds=self.conf.lease_seconds,
                                      limit=self.conf.claim_batch)
                for snap in snaps:
                    if snap.pk in self.watchers:
                        continue
                    watcher = CallWatcher(self, snap)
                    self.watchers[snap.pk] = watcher
                    watcher.task = self.spawn(watcher.run())
                    self.stats["claimed"] += 1
                    if snap.was_attached:  # another supervisor watched it before: its lease expired
                        metrics.supervisor().takeovers.inc()
                if len(snaps) >= self.conf.claim_batch:
                    continue  # more are waiting
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("supervisor: claiming calls failed")
                snaps = []
            if not snaps:
                self.stats["idle_claims"] += 1  # nothing to claim: it now waits a whole poll (or a wake)
            poll = min(self.conf.poll_seconds, BUSY_POLL_SECONDS) if snaps else self.conf.poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=poll)
            self._wake.clear()

    async def _check_loop(self) -> None:
        last_renew = 0.0
        while True:
            try:
                renew = time.monotonic() - last_renew >= self.conf.renew_seconds
                # Only calls claimed before the query can be judged by its answer: one claimed
                # while it ran is ours but may be missing from it.
                known = list(self.watchers.items())
                statuses = await self.db_control(store.check, owner=self.owner,
                                         renew_seconds=self.conf.lease_seconds if renew else None)
                if renew:
                    last_renew = time.monotonic()
                sup_metrics = metrics.supervisor()
                sup_metrics.heartbeat.set(time.time())  # the database answered, leases renewed
                sup_metrics.calls_watched.set(len(self.watchers))
                for pk, watcher in known:
                    if watcher.task is None or watcher.task.done():
                        continue
                    status = statuses.get(pk)
                    if status is None:
                        # Our lease is gone (we stalled past it and another supervisor took the call).
                        self.stats["lost"] += 1
                        metrics.supervisor().leases_lost.inc()
                        watcher.stop()
                    else:
                        watcher.on_status(status)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("supervisor: checking calls failed")
            await asyncio.sleep(self.conf.check_seconds)


def lease_until(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)
