"""Auto top-up (docs/billing.md "Auto top-up"): a saved card, and a pack bought off-session on it
when the wallet's available credits fall below the user's threshold.

- **Saving a card**: a setup-mode Checkout Session for the user's Stripe Customer
  (`start_card_setup`); once complete (`checkout.session.completed` with `mode=setup`, or the
  page it returns to) its SetupIntent names the PaymentMethod, stored on the wallet with its brand
  and last four digits, and made the Customer's `invoice_settings.default_payment_method`
  (`save_card_from_setup`).
- **Buying**: `crossings` enqueues `billing.auto_top_up(wallet_id, crossing)`;
  `run_auto_top_up` makes the crossing's Purchase (unique `topup_key`) under the wallet's lock,
  checks the monthly number of top-ups and the spending cap, then, outside any transaction, claims
  it (pending → processing, one worker) and charges the saved card: an off-session PaymentIntent
  (idempotency key `topup:<purchase>`, so a retried task charges once), then its invoice (created,
  finalized, and the PaymentIntent attached with `attach_payment`). With `STRIPE_AUTOMATIC_TAX` the
  invoice comes first (`automatic_tax`), and the PaymentIntent charges its `amount_due`.
- **Stuck**: a worker killed between the claim and Stripe's answer leaves the purchase processing;
  the beat sweep (`redrive_top_up`) finishes it with the same idempotency keys.
- **Crediting**: `credit_top_up`, from the PaymentIntent Stripe returned or from the webhook
  (`payment_intent.succeeded`, `invoice.paid`), whichever comes first, exactly once, as a paid
  purchase (grant source TOP_UP): receipts, refunds and disputes then work as for packs.
- **Failures**: a decline or `authentication_required` (402 card error, or the
  `payment_intent.payment_failed` event) fails the purchase, switches auto top-up off with the
  reason, and emails the user a link to pay on-session (the invoice's hosted page). A network
  failure leaves the purchase pending for the task's retry (same idempotency key).

Stripe is called outside the transactions here, never inside one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from celery import shared_task
from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import locks, stripe_client
from billing.exceptions import (
    CardDeclined,
    InvalidAmount,
    SpendingCapExceeded,
    StripeFailure,
    StripeUnavailable,
)
from billing.models import CreditPack, Purchase, Wallet, money
from billing.services import caps, cards, crossings
from billing.services.checkout import _stripe_customer_for
from billing.services.ledger import Kind, get_wallet, post_entry
from billing.stripe_client import StripeObject
from realtime_saas.emails import send_to_user

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

SETUP_PURPOSE = "auto_top_up_card"
FAILURE_REASONS = {
    "card_declined": "Your card was declined",
    "authentication_required": "Your bank asked to confirm the payment, which cannot be done while you are away",
    "expired_card": "Your card has expired",
}


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopUpSettings:
    enabled: bool
    threshold: int | None
    pack: CreditPack | None
    monthly_limit: int
    monthly_cap_cents: int | None
    time_zone: str


def update_settings(*, user: User, settings: TopUpSettings) -> Wallet:
    """Save the auto top-up page: threshold, pack, monthly number, spending cap, time zone.

    Raises `InvalidAmount` with the reason when enabling lacks a saved card, an active pack or a
    threshold ≥ 1 (the page's form says the same under each field). Switching it on clears the
    reason it was switched off. Changing the threshold starts a new crossing, and so does saving
    it switched on after the current crossing's top-up failed (a decline, the cap, the month's
    number): the save is the user's answer to the failure (another card, a higher cap), and
    without a new crossing a wallet still below its threshold would never top up again."""
    if settings.time_zone not in caps.time_zone_names():
        raise InvalidAmount(f"{settings.time_zone!r} is not a time zone.")
    if settings.monthly_limit < 1:
        raise InvalidAmount("Allow at least one top-up a month.")
    if settings.threshold is not None and settings.threshold < 1:
        raise InvalidAmount("The threshold is at least 1 credit.")
    if settings.pack is not None and not settings.pack.active:
        raise InvalidAmount(f"The pack {settings.pack.name!r} is not on sale.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        if settings.enabled:
            if not wallet.payment_method_id:
                raise InvalidAmount("Save a card before switching auto top-up on.")
            if settings.pack is None or settings.threshold is None:
                raise InvalidAmount("Choose a pack and a threshold to switch auto top-up on.")
        if settings.enabled and not wallet.auto_topup_enabled:
            wallet.auto_topup_disabled_reason = ""
            wallet.auto_topup_disabled_at = None
        failed = settings.enabled and Purchase.objects.filter(
            topup_key=crossings.topup_key(wallet.pk, wallet.auto_topup_crossing), status=Purchase.Status.FAILED,
        ).exists()
        if settings.threshold != wallet.auto_topup_threshold or failed:
            wallet.auto_topup_crossing += 1  # a new threshold, or a retry of a failed top-up: a new crossing
        wallet.auto_topup_enabled = settings.enabled
        wallet.auto_topup_threshold = settings.threshold
        wallet.auto_topup_pack = settings.pack
        wallet.auto_topup_monthly_limit = settings.monthly_limit
        wallet.monthly_cap_cents = settings.monthly_cap_cents
        wallet.save()
        from accounts.models import User

        User.objects.filter(pk=user.pk).update(time_zone=settings.time_zone)
        crossings.note_available(wallet)  # already below the new threshold: top up now
    return wallet


def top_ups_this_month(wallet: Wallet, *, time_zone: str) -> int:
    """Auto top-ups paid or in flight this calendar month (the user's time zone)."""
    start, _ = caps.month_bounds(time_zone)
    return Purchase.objects.filter(
        user_id=wallet.user_id, source=Purchase.Source.AUTO_TOP_UP, status__in=caps.CHARGED_STATUSES,
        created_at__gte=start,
    ).count()


def top_up_coming(*, user_id: int) -> bool:
    """Whether an auto top-up of this user is on its way: made and not yet credited or failed, or
    about to be (switched on, below the threshold, the crossing not yet bought). A live call that
    runs out waits for it (the supervisor's grace, REALTIME_TOPUP_GRACE_SECONDS)."""
    if Purchase.objects.filter(
        user_id=user_id, source=Purchase.Source.AUTO_TOP_UP,
        status__in=[Purchase.Status.PENDING, Purchase.Status.PROCESSING],
    ).exists():
        return True
    wallet = Wallet.objects.filter(user_id=user_id).first()
    if wallet is None or not wallet.auto_topup_enabled or not wallet.auto_topup_threshold:
        return False
    return (wallet.balance - wallet.held < wallet.auto_topup_threshold
            and not Purchase.objects.filter(topup_key=crossings.topup_key(wallet.pk, wallet.auto_topup_crossing)).exists())


# --- saving a card ---------------------------------------------------------------------------


def start_card_setup(*, user: User, success_url: str, cancel_url: str, currency: str = "usd") -> str:
    """A setup-mode Checkout Session for the user's Stripe Customer; returns its URL. The success
    URL gets `{CHECKOUT_SESSION_ID}` (the page it returns to saves the card if the webhook is late)."""
    stripe_client.ensure_configured()
    customer_id = _stripe_customer_for(user)
    joiner = "&" if "?" in success_url else "?"
    session = stripe_client.create_checkout_session(
        params={
            "mode": "setup",
            "currency": currency,  # setup mode without payment_method_types needs it
            "customer": customer_id,
            "client_reference_id": str(user.pk),
            "metadata": {"purpose": SETUP_PURPOSE, "user_id": str(user.pk)},
            "success_url": f"{success_url}{joiner}setup_session={{CHECKOUT_SESSION_ID}}",
            "cancel_url": cancel_url,
        },
        idempotency_key=f"card-setup:{user.pk}:{uuid.uuid4()}",
    )
    url: str = session["url"]
    return url


def save_card_from_setup(*, session_id: str) -> Wallet | None:
    """Store the card a completed setup-mode session saved (Stripe's own records, retrieved: never
    the event's copy), and make it the Customer's default for invoices. Idempotent. None when the
    session is not a complete setup of one of our wallets' Customers."""
    session = stripe_client.retrieve_checkout_session(session_id)
    if session.get("mode") != "setup" or session.get("status") != "complete":
        return None
    wallet = Wallet.objects.filter(stripe_customer_id=session.get("customer") or "-").first()
    if wallet is None or str(session.get("client_reference_id")) != str(wallet.user_id):
        logger.warning("setup session %s is not one of ours", session_id)
        return None
    intent_ref = session.get("setup_intent")
    intent_id = intent_ref.get("id") if isinstance(intent_ref, dict) else intent_ref
    if not intent_id:
        return None
    intent = stripe_client.retrieve_setup_intent(intent_id)
    method = intent.get("payment_method")
    if intent.get("status") != "succeeded" or not isinstance(method, dict) or intent.get("customer") != wallet.stripe_customer_id:
        return None
    return cards.store_card(wallet=wallet, method=method)


def card_label(wallet: Wallet) -> str:
    """"Visa •••• 4242", or "" without a saved card."""
    if not wallet.payment_method_id:
        return ""
    brand = {"amex": "American Express", "mastercard": "Mastercard"}.get(wallet.card_brand, wallet.card_brand.title())
    return f"{brand or 'Card'} •••• {wallet.card_last4}"


# --- the top-up --------------------------------------------------------------------------------


def _refuse(purchase: Purchase, *, code: str, reason: str) -> None:
    Purchase.objects.filter(pk=purchase.pk).update(
        status=Purchase.Status.FAILED, failure_code=code, failure_reason=reason[:500],
    )
    purchase.refresh_from_db()


def _open_top_up(*, wallet_id: int, crossing: int) -> Purchase | None:
    """The crossing's purchase, made under the wallet's lock when there is something to buy; the
    existing one if it is still waiting to be charged (a retry); None when there is nothing to do."""
    from accounts.models import User

    key = crossings.topup_key(wallet_id, crossing)
    with transaction.atomic(durable=True):
        wallet = locks.wallet_by_pk_for_update(wallet_id=wallet_id)
        existing = Purchase.objects.filter(topup_key=key).first()
        if existing is not None:
            if existing.status != Purchase.Status.PENDING or existing.payment_intent_id:
                return None
            if not wallet.auto_topup_enabled:
                # A retry after the user switched auto top-up off: not charged. Had the first
                # attempt reached Stripe (its answer lost), its payment_intent.succeeded still
                # credits this purchase (credit_top_up accepts a failed one).
                _refuse(existing, code="switched_off",
                        reason="Not charged: you switched auto top-up off before it was charged.")
                return None
            return existing
        pack = wallet.auto_topup_pack
        if (wallet.auto_topup_crossing != crossing or not wallet.auto_topup_enabled or pack is None
                or not wallet.payment_method_id or not wallet.auto_topup_threshold
                or wallet.balance - wallet.held >= wallet.auto_topup_threshold):
            return None
        try:
            with transaction.atomic():
                purchase = Purchase.objects.create(
                    user_id=wallet.user_id, pack=pack, source=Purchase.Source.AUTO_TOP_UP, topup_key=key,
                    credits=pack.credits, amount_cents=pack.price_cents, subtotal_cents=pack.price_cents,
                    currency=pack.currency.lower(),
                )
        except IntegrityError:
            return None  # made by a racing worker (the wallet's lock makes this rare)
        time_zone = User.objects.values_list("time_zone", flat=True).get(pk=wallet.user_id)
        if top_ups_this_month(wallet, time_zone=time_zone) > wallet.auto_topup_monthly_limit:
            _refuse(purchase, code="monthly_limit", reason=(
                f"Not charged: auto top-up already bought {wallet.auto_topup_monthly_limit} time(s) this month, "
                "the most you allowed."))
            return None
        if not pack.active:
            _refuse(purchase, code="pack_unavailable", reason=f"Not charged: the pack {pack.name!r} is no longer on sale.")
            return None
        try:
            # Counts this purchase already (pending): compare without adding it twice.
            status = caps.cap_status(wallet, time_zone=time_zone)
            if status is not None and status.charged_cents > status.cap_cents:
                raise SpendingCapExceeded(status.purchase_refusal(0))
        except SpendingCapExceeded as exc:
            _refuse(purchase, code="spending_cap", reason=f"Not charged: {exc}")
            return None
    return purchase


def run_auto_top_up(*, wallet_id: int, crossing: int) -> Purchase | None:
    """The task's body: buy the wallet's pack on its saved card for this crossing, once.

    Raises `StripeUnavailable` (network, 5xx) for the task to retry: the purchase is left pending
    and the retry charges with the same idempotency key, so Stripe makes one PaymentIntent. A
    worker killed after the claim leaves it processing: `redrive_top_up` (the beat sweep) takes
    it from there."""
    purchase = _open_top_up(wallet_id=wallet_id, crossing=crossing)
    if purchase is None:
        return None
    # One worker charges: whoever moves it from pending to processing. The claim's time is what
    # the sweep measures a stuck top-up by (`updated_at`: a queryset update does not touch it).
    if not Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING,
                                   payment_intent_id__isnull=True).update(status=Purchase.Status.PROCESSING,
                                                                          updated_at=timezone.now()):
        return None
    try:
        return _charge_claimed(purchase_id=purchase.pk)
    except StripeUnavailable:
        Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PROCESSING).update(status=Purchase.Status.PENDING)
        raise


def _charge_claimed(*, purchase_id: int) -> Purchase:
    """Charge a top-up this worker has claimed (processing), and credit or fail it. The same for
    the task and the sweep's re-drive: every Stripe request has its own idempotency key, so a
    re-run after a lost answer gets Stripe's first answer back instead of a second payment.

    Without tax, the PaymentIntent comes first and the invoice after it (a failure making the
    invoice never holds the payment up). With `STRIPE_AUTOMATIC_TAX`, Stripe Tax computes the tax
    when the invoice is finalized (docs.stripe.com/tax/invoicing: "Stripe calculates the tax at the
    published rate at the time of invoice finalization"), so the invoice comes first and the
    PaymentIntent charges its `amount_due` (`_open_taxed_invoice`). A purchase whose invoice was
    made before its payment keeps that order whatever the setting says now, so a re-run sends the
    same parameters with each key. Raises `StripeUnavailable` (the purchase stays processing)."""
    purchase = Purchase.objects.select_related("pack").get(pk=purchase_id)
    wallet = Wallet.objects.get(user_id=purchase.user_id)
    taxed_invoice: StripeObject | None = None
    if purchase.invoice_id or django_settings.STRIPE_AUTOMATIC_TAX:
        try:
            taxed_invoice = _open_taxed_invoice(purchase, wallet)
        except StripeFailure as exc:
            if isinstance(exc, StripeUnavailable):
                raise
            top_up_failed(purchase_id=purchase.pk, code="stripe_error", reason=str(exc), invoice=None)
            return Purchase.objects.get(pk=purchase.pk)
        if taxed_invoice is None:  # refused (the cap, counted with the tax) or no longer processing
            return Purchase.objects.get(pk=purchase.pk)
        purchase.refresh_from_db()
    try:
        intent = _charge(purchase, wallet)
    except StripeUnavailable:
        raise
    except CardDeclined as exc:
        invoice = taxed_invoice or _invoice_for(purchase, wallet, intent_id=None)
        top_up_failed(purchase_id=purchase.pk, code=exc.code, reason=str(exc), invoice=invoice)
        return Purchase.objects.get(pk=purchase.pk)
    except StripeFailure as exc:
        top_up_failed(purchase_id=purchase.pk, code="stripe_error", reason=str(exc), invoice=None)
        return Purchase.objects.get(pk=purchase.pk)
    Purchase.objects.filter(pk=purchase.pk, payment_intent_id__isnull=True).update(payment_intent_id=intent["id"])
    if intent.get("status") == "succeeded":
        credit_top_up(purchase_id=purchase.pk, intent=intent)
        if taxed_invoice is not None:
            _attach(purchase, invoice_id=taxed_invoice["id"], intent_id=intent["id"])
        else:
            _invoice_for(purchase, wallet, intent_id=intent["id"])
    return Purchase.objects.get(pk=purchase.pk)


def _charge(purchase: Purchase, wallet: Wallet) -> StripeObject:
    """The off-session PaymentIntent on the saved card (docs.stripe.com/payments/save-and-reuse,
    "Charge the saved payment method later": `off_session=true`, `confirm=true`), for what the
    purchase charges: the pack's price, or its taxed invoice's `amount_due`."""
    return stripe_client.create_payment_intent(
        params={
            "amount": purchase.amount_cents,
            "currency": purchase.currency,
            "customer": wallet.stripe_customer_id,
            "payment_method": wallet.payment_method_id,
            "off_session": True,
            "confirm": True,
            "description": f"Auto top-up: {purchase.pack.name}, {purchase.credits:,} credits",
            "metadata": {
                "purchase_id": str(purchase.public_id),
                "user_id": str(purchase.user_id),
                "pack": purchase.pack.key,
                "credits": str(purchase.credits),
                "source": Purchase.Source.AUTO_TOP_UP,
            },
        },
        idempotency_key=f"topup:{purchase.public_id}",
    )


def _make_invoice(purchase: Purchase, wallet: Wallet, *, taxed: bool) -> StripeObject:
    """The top-up's invoice, created with its one line and finalized (a number, a hosted page and
    a PDF). Taxed: `automatic_tax[enabled]=true` and the line's price before tax
    (`tax_behavior=exclusive`: automatic tax refuses lines whose behaviour is unspecified, Stripe's
    `automatic_tax[enabled]` on POST /v1/invoices), as checkout's inline prices. Idempotent (a key
    per step); raises `StripeFailure`."""
    key = f"topup:{purchase.public_id}"
    invoice = stripe_client.create_invoice(params={
        "customer": wallet.stripe_customer_id,
        "currency": purchase.currency,
        "collection_method": "charge_automatically",
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "description": f"Auto top-up: {purchase.pack.name}, {purchase.credits:,} credits",
        "metadata": {"purchase_id": str(purchase.public_id), "user_id": str(purchase.user_id)},
        **({"automatic_tax": {"enabled": True}} if taxed else {}),
    }, idempotency_key=f"{key}:invoice")
    stripe_client.create_invoice_item(params={
        "customer": wallet.stripe_customer_id, "invoice": invoice["id"],
        "amount": purchase.subtotal_cents if purchase.subtotal_cents is not None else purchase.amount_cents,
        "currency": purchase.currency, "description": f"{purchase.pack.name}: {purchase.credits:,} credits",
        **({"tax_behavior": "exclusive"} if taxed else {}),
    }, idempotency_key=f"{key}:item")
    return stripe_client.finalize_invoice(invoice["id"], idempotency_key=f"{key}:finalize")


def _attach(purchase: Purchase, *, invoice_id: str, intent_id: str) -> StripeObject | None:
    """Pay the invoice with the succeeded PaymentIntent (docs.stripe.com/api/invoices/
    attach_payment: "If the PaymentIntent's status is already succeeded when it's attached, it's
    credited to the invoice immediately"). Never undoes the payment or the credits.

    The invoice must not stay open once the top-up is paid: its hosted page would let the user
    pay a second time for credits already given. When the attach fails it is marked paid out of
    band (the PaymentIntent did pay it), failing that voided; failing both, the purchase keeps
    no link to it (nothing shows the user a way to pay it) and staff see the error in the log."""
    key = f"topup:{purchase.public_id}"
    try:
        return stripe_client.attach_invoice_payment(invoice_id, payment_intent_id=intent_id,
                                                    idempotency_key=f"{key}:attach")
    except StripeFailure as exc:
        logger.warning("top-up %s: its payment could not be attached to invoice %s: %s",
                       purchase.public_id, invoice_id, exc)
    for close, step in ((stripe_client.mark_invoice_paid_out_of_band, "out_of_band"),
                        (stripe_client.void_invoice, "void")):
        try:
            return close(invoice_id, idempotency_key=f"{key}:{step}")
        except StripeFailure as exc:
            logger.warning("top-up %s: invoice %s could not be closed (%s): %s", purchase.public_id, invoice_id,
                           step, exc)
    logger.error("top-up %s is paid but its invoice %s is still open; its links are withheld",
                 purchase.public_id, invoice_id)
    Purchase.objects.filter(pk=purchase.pk).update(invoice_url="", invoice_pdf="")
    return None


def _invoice_for(purchase: Purchase, wallet: Wallet, *, intent_id: str | None) -> StripeObject | None:
    """An untaxed top-up's invoice, made after its PaymentIntent (`_make_invoice`) and paid by
    attaching it (`_attach`). After a decline it stays open: its hosted page is where the user pays
    on-session. A failure here leaves the purchase without an invoice, never undoes the payment."""
    try:
        invoice = _make_invoice(purchase, wallet, taxed=False)
    except StripeFailure as exc:
        logger.warning("top-up %s: its invoice could not be made: %s", purchase.public_id, exc)
        return None
    if intent_id:
        attached = _attach(purchase, invoice_id=invoice["id"], intent_id=intent_id)
        if attached is None:  # still open: no link to it (see _attach)
            Purchase.objects.filter(pk=purchase.pk).update(invoice_id=invoice["id"])
            return invoice
        invoice = attached
    Purchase.objects.filter(pk=purchase.pk).update(
        invoice_id=invoice["id"], invoice_url=invoice.get("hosted_invoice_url") or "",
        invoice_pdf=invoice.get("invoice_pdf") or "",
    )
    return invoice


def _open_taxed_invoice(purchase: Purchase, wallet: Wallet) -> StripeObject | None:
    """The taxed top-up's finalized invoice, before anything is charged: its subtotal, tax and
    `amount_due` become the purchase's `subtotal_cents`, `tax_cents` and `amount_cents` (what the
    PaymentIntent charges, what the webhook's credit checks and the cap counts), with its links.

    The spending cap is checked again with the tax (the task's first check knew only the price):
    over it, the purchase fails (`spending_cap`, auto top-up stays on) and the invoice is voided
    (docs.stripe.com/api/invoices/void: "Mark a finalized invoice as void"), so nobody can pay
    it. None then, or when the purchase is no longer processing. A purchase that already has its
    invoice (a re-run) was checked when it got it: nothing is made or checked again, so a payment
    Stripe may already have made is never refused."""
    if purchase.invoice_id:
        return {"id": purchase.invoice_id, "hosted_invoice_url": purchase.invoice_url,
                "invoice_pdf": purchase.invoice_pdf}
    from accounts.models import User

    invoice = _make_invoice(purchase, wallet, taxed=True)
    tax = sum(int(t.get("amount") or 0) for t in invoice.get("total_taxes") or [])
    refusal = ""
    with transaction.atomic(durable=True):
        locked = locks.purchase_for_update(purchase_id=purchase.pk)
        locked_wallet = locks.wallet_for_update(user_id=locked.user_id)
        if locked.status != Purchase.Status.PROCESSING or locked.invoice_id:
            return None
        locked.subtotal_cents = int(invoice["subtotal"])
        locked.tax_cents = tax
        locked.amount_cents = int(invoice["amount_due"])
        locked.invoice_id = invoice["id"]
        locked.invoice_url = invoice.get("hosted_invoice_url") or ""
        locked.invoice_pdf = invoice.get("invoice_pdf") or ""
        locked.save(update_fields=["subtotal_cents", "tax_cents", "amount_cents", "invoice_id", "invoice_url",
                                   "invoice_pdf", "updated_at"])
        time_zone = User.objects.values_list("time_zone", flat=True).get(pk=locked.user_id)
        # Counts this purchase already, at its taxed amount: compare without adding it twice.
        status = caps.cap_status(locked_wallet, time_zone=time_zone)
        if status is not None and status.charged_cents > status.cap_cents:
            refusal = f"Not charged: {status.purchase_refusal(0)}"
            _refuse(locked, code="spending_cap", reason=refusal)
    if refusal:
        try:
            stripe_client.void_invoice(invoice["id"], idempotency_key=f"topup:{purchase.public_id}:void")
        except StripeFailure as exc:
            logger.warning("top-up %s: its refused invoice %s could not be voided: %s",
                           purchase.public_id, invoice["id"], exc)
        return None
    return invoice


# --- top-ups a dead worker left processing (the beat sweep) ---------------------------------------

# Stripe may forget an idempotency key once it is 24 hours old, and then makes a new object for it
# (docs.stripe.com/api/idempotent_requests): past this age a re-drive could pay a second time.
IDEMPOTENCY_WINDOW = timedelta(hours=23)


def stuck_top_ups(*, stuck_after_seconds: float, limit: int = 50) -> list[int]:
    """Top-ups claimed (processing) longer ago than `stuck_after_seconds` and neither credited nor
    failed since: their worker died between the claim and Stripe's answer. Oldest first."""
    cutoff = timezone.now() - timedelta(seconds=stuck_after_seconds)
    return list(Purchase.objects.filter(
        source=Purchase.Source.AUTO_TOP_UP, status=Purchase.Status.PROCESSING, updated_at__lt=cutoff,
    ).order_by("updated_at").values_list("pk", flat=True)[:limit])


def redrive_top_up(*, purchase_id: int, stuck_after_seconds: float) -> Purchase | None:
    """Finish a top-up left processing, exactly as the task would have: re-claimed by a
    conditional UPDATE (one sweeper; the claim's clock restarts), then charged with the same
    idempotency keys, so Stripe answers a request it already ran with its first answer (one
    PaymentIntent) and runs one it never saw. Credited or failed as by the task; a network failure
    leaves it processing for the next sweep. Past Stripe's idempotency window (`IDEMPOTENCY_WINDOW`
    from the purchase's creation) nothing is sent again: a PaymentIntent already stored is
    retrieved and decides, as its webhook would; without one the purchase fails (`stale`, auto
    top-up stays on; a payment Stripe did make still credits it from its webhook). None when another sweeper took it or it is no longer stuck."""
    now = timezone.now()
    if not Purchase.objects.filter(
        pk=purchase_id, source=Purchase.Source.AUTO_TOP_UP, status=Purchase.Status.PROCESSING,
        updated_at__lt=now - timedelta(seconds=stuck_after_seconds),
    ).update(updated_at=now):
        return None
    purchase = Purchase.objects.get(pk=purchase_id)
    if purchase.created_at >= now - IDEMPOTENCY_WINDOW:
        return _charge_claimed(purchase_id=purchase_id)
    if purchase.payment_intent_id:  # Stripe's record of the payment decides, as for its webhook
        payment_intent_event(stripe_client.retrieve_payment_intent(purchase.payment_intent_id))
    else:
        logger.error("top-up %s stuck processing since %s, past Stripe's idempotency window: given up",
                     purchase.public_id, purchase.created_at)
        Purchase.objects.filter(pk=purchase_id, status=Purchase.Status.PROCESSING).update(
            status=Purchase.Status.FAILED, failure_code="stale",
            failure_reason="Not completed: Stripe's answer was lost for a day. If your card was charged, "
                           "the credits come with Stripe's confirmation.",
        )
    return Purchase.objects.get(pk=purchase_id)


def credit_top_up(*, purchase_id: int, intent: StripeObject) -> Purchase:
    """Credit a top-up paid by `intent` (a PaymentIntent as Stripe returned it), exactly once, as
    a paid purchase with a TOP_UP grant. Refused (logged, nothing written) unless the intent
    succeeded, for this purchase's amount and currency, from the wallet's Customer."""
    with transaction.atomic(durable=True):
        locked = locks.purchase_for_update(purchase_id=purchase_id)
        if locked.credited_at is not None:
            return locked
        wallet = locks.wallet_for_update(user_id=locked.user_id)
        problem = ""
        if intent.get("status") != "succeeded":
            problem = f"status {intent.get('status')!r}"
        elif intent.get("customer") != wallet.stripe_customer_id:
            problem = "another customer"
        elif intent.get("amount_received", intent.get("amount")) != locked.amount_cents:
            problem = f"amount {intent.get('amount')} is not {locked.amount_cents}"
        elif (intent.get("currency") or "").lower() != locked.currency:
            problem = f"currency {intent.get('currency')!r}"
        if problem:
            logger.error("not crediting top-up %s from %s: %s", locked.public_id, intent.get("id"), problem)
            return locked
        post_entry(
            wallet, credits=locked.credits, kind=Kind.PURCHASE, idempotency_key=f"purchase:{locked.public_id}",
            reference=f"purchase:{locked.public_id}", purchase=locked,
            memo=f"Auto top-up: {locked.pack.name} pack, {locked.amount_display}",
        )
        locked.status = Purchase.Status.PAID
        locked.credited_at = timezone.now()
        locked.failure_reason = ""
        locked.failure_code = ""
        locked.payment_intent_id = intent["id"]
        locked.save()
        from billing import notifications

        notifications.purchase_fulfilled(locked)
        crossings.note_available(wallet)  # back above the threshold: the next crossing may top up
    return locked


def top_up_failed(*, purchase_id: int, code: str, reason: str, invoice: StripeObject | None = None) -> bool:
    """A declined top-up (or one needing the customer's authentication): the purchase fails, auto
    top-up is switched off with the reason, and the user is emailed a link to pay on-session.
    Idempotent: only the call that fails the purchase switches off and emails. Returns it did."""
    label = FAILURE_REASONS.get(code, "The payment failed")
    message = f"{label}. {reason}".strip() if reason and reason not in label else f"{label}."
    with transaction.atomic(durable=True):
        locked = locks.purchase_for_update(purchase_id=purchase_id)
        if locked.status not in (Purchase.Status.PENDING, Purchase.Status.PROCESSING):
            return False
        locked.status = Purchase.Status.FAILED
        locked.failure_code = code[:50]
        locked.failure_reason = f"Auto top-up failed: {message}"[:500]
        locked.save(update_fields=["status", "failure_code", "failure_reason", "updated_at"])
        wallet = locks.wallet_for_update(user_id=locked.user_id)
        wallet.auto_topup_enabled = False
        wallet.auto_topup_disabled_reason = (
            f"Switched off on {timezone.now():%-d %B %Y}: {message} Pay the top-up yourself or save another card, "
            "then switch it on again."
        )[:500]
        wallet.auto_topup_disabled_at = timezone.now()
        wallet.save(update_fields=["auto_topup_enabled", "auto_topup_disabled_reason", "auto_topup_disabled_at",
                                   "updated_at"])
        transaction.on_commit(partial(send_top_up_failed_email.delay, locked.pk))
    return True


# --- webhooks (billing.services.stripe_events) -----------------------------------------------


def _top_up_named_by(obj: StripeObject) -> Purchase | None:
    public_id = (obj.get("metadata") or {}).get("purchase_id")
    try:
        return Purchase.objects.filter(public_id=uuid.UUID(str(public_id)), source=Purchase.Source.AUTO_TOP_UP).first()
    except ValueError:
        return None


def payment_intent_event(obj: StripeObject) -> str:
    """`payment_intent.succeeded` / `payment_intent.payment_failed` of a top-up: Stripe's current
    record of the intent decides (retrieved, not the event's copy), so order and replays agree."""
    purchase = _top_up_named_by(obj)
    if purchase is None:
        return "not an auto top-up"
    intent = stripe_client.retrieve_payment_intent(obj["id"])
    if (intent.get("metadata") or {}).get("purchase_id") != str(purchase.public_id):
        return "not an auto top-up"
    if intent.get("status") == "succeeded":
        done = credit_top_up(purchase_id=purchase.pk, intent=intent)
        return f"top-up {done.public_id} {done.status}"
    error = intent.get("last_payment_error") or {}
    if intent.get("status") == "requires_payment_method" and error:
        top_up_failed(purchase_id=purchase.pk, code=str(error.get("code") or "card_declined"),
                      reason=str(error.get("message") or ""))
        return f"top-up {purchase.public_id} failed"
    return f"top-up {purchase.public_id}: intent {intent.get('status')}"


def invoice_paid(obj: StripeObject) -> str:
    """`invoice.paid` of a top-up's invoice (e.g. paid on-session on its hosted page after a
    decline): credit the purchase from the PaymentIntent that paid it."""
    purchase = _top_up_named_by(obj)
    if purchase is None or purchase.invoice_id != obj.get("id"):
        return "not an auto top-up's invoice"
    paid = [p for p in stripe_client.list_invoice_payments(obj["id"]) if p.get("status") == "paid"]
    intent_id = next(((p.get("payment") or {}).get("payment_intent") for p in paid), None)
    if not intent_id:
        return f"top-up {purchase.public_id}: no paid payment on its invoice"
    intent = stripe_client.retrieve_payment_intent(intent_id)
    done = credit_top_up(purchase_id=purchase.pk, intent=intent)
    return f"top-up {done.public_id} {done.status}"


# --- email ---------------------------------------------------------------------------------------


@shared_task(name="billing.send_top_up_failed", soft_time_limit=30, time_limit=45)
def send_top_up_failed_email(purchase_pk: int) -> None:
    """The decline email: what happened, that auto top-up is off, and where to pay on-session."""
    from django.conf import settings
    from django.urls import reverse

    purchase = Purchase.objects.select_related("user", "pack").get(pk=purchase_pk)
    wallet = get_wallet(purchase.user)
    pay_url = purchase.invoice_url or settings.SITE_URL.rstrip("/") + reverse("buy_credits")
    try:
        send_to_user(to=purchase.user.email, template="auto_top_up_failed", context={
            "pack_name": purchase.pack.name, "credits": purchase.credits,
            "amount": money(purchase.amount_cents, purchase.currency), "reason": purchase.failure_reason,
            "pay_url": pay_url, "settings_url": settings.SITE_URL.rstrip("/") + reverse("billing_auto_top_up"),
            "balance": wallet.balance,
        })
    except Exception:
        logger.exception("auto top-up failure email for purchase %s could not be sent", purchase.public_id)
