"""Credits: wallets, the append-only ledger, holds, credit packs, purchases, refunds, disputes and
the Stripe events that cause them.

Nothing here changes a balance by itself: `billing/services/` is the only write path.
"""

import uuid
from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.templatetags.money import format_credits, format_money


def money(amount_cents: int, currency: str) -> str:
    """Minor units as the user reads them ("$12.00"): the one helper pages and e-mails use
    (`billing.templatetags.money`), in the active language's way."""
    return format_money(amount_cents, currency)


class Wallet(models.Model):
    """One per user. `balance` and `held` cache the ledger and the active holds; both are updated
    only under `select_for_update` of this row, in the same transaction as what they summarise.

    `held <= balance` is *not* a table constraint: a hold is placed only when available
    (balance − held) covers it, but a refund or dispute clawback may later take the balance under
    what running calls still hold (even below zero). Those calls keep their holds and settle; the
    wallet is then blocked until it is topped up.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallet")
    balance = models.BigIntegerField(default=0, help_text="Credits: the sum of the ledger.")
    held = models.BigIntegerField(default=0, help_text="Credits reserved by active holds.")
    open_disputes = models.IntegerField(default=0, help_text="Payments under an open dispute.")
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    # The low-balance email: sent once when available credits fall to or below the threshold,
    # again only after they rose above it (`low_balance_notified_at` is cleared then).
    low_balance_threshold = models.PositiveBigIntegerField(
        null=True, blank=True,
        help_text="Credits; empty means 20% of the last pack bought.",
    )
    low_balance_notified_at = models.DateTimeField(null=True, blank=True)
    # Credits owed after a refund or dispute took back more paid credits than the wallet's paid
    # grants still had (see CreditGrant): the next paid credits pay it first. Always
    # balance == sum(active grants' remaining) − debt.
    debt = models.BigIntegerField(default=0, help_text="Paid credits owed after a clawback.")

    # Auto top-up (docs/billing.md): when available credits fall below the threshold, buy the pack
    # off-session on the saved card, at most `auto_topup_monthly_limit` times a calendar month.
    # `auto_topup_crossing` counts the crossings: the top-up for crossing n is unique by that
    # number (Purchase.topup_key), so workers and retries buy once; it moves on when available
    # credits are back above the threshold.
    auto_topup_enabled = models.BooleanField(default=False)
    auto_topup_threshold = models.PositiveBigIntegerField(null=True, blank=True, help_text="Credits.")
    auto_topup_pack = models.ForeignKey(
        "CreditPack", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
    )
    auto_topup_monthly_limit = models.PositiveSmallIntegerField(default=3)
    auto_topup_crossing = models.PositiveIntegerField(default=0)
    auto_topup_disabled_reason = models.CharField(max_length=500, blank=True)
    auto_topup_disabled_at = models.DateTimeField(null=True, blank=True)
    # The card saved for off-session payments (a Stripe PaymentMethod of stripe_customer_id).
    payment_method_id = models.CharField(max_length=255, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    # The monthly spending cap in the wallet's currency's minor units, per calendar month of the
    # user's time zone; empty: no cap.
    monthly_cap_cents = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="wallet_held_non_negative"),
            models.CheckConstraint(condition=Q(debt__gte=0), name="wallet_debt_non_negative"),
            models.CheckConstraint(condition=Q(open_disputes__gte=0), name="wallet_open_disputes_non_negative"),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.user}"

    @property
    def available(self) -> int:
        return max(0, self.balance - self.held) if not self.blocked_reason else 0

    @property
    def blocked_reason(self) -> str:
        """Why new holds are refused, in words for the user ("" when they are not)."""
        if self.balance < 0:
            return (
                f"Your balance is {self.balance:,} credits after a refund or a payment dispute. "
                "Buy credits to settle it before starting new calls."
            )
        if self.open_disputes > 0:
            return "One of your payments is disputed with your bank. New calls are paused until it is resolved."
        return ""


class LedgerQuerySet(models.QuerySet["LedgerEntry"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("The ledger is append-only: entries are never updated.")

    def delete(self) -> NoReturn:
        raise TypeError("The ledger is append-only: entries are never deleted.")


class LedgerEntry(models.Model):
    """One signed change of a wallet's balance. Never updated or deleted."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        BONUS = "bonus", "Bonus"
        USAGE = "usage", "Usage"
        REFUND = "refund", "Refund"
        REFUND_REVERSAL = "refund_reversal", "Failed refund given back"
        DISPUTE = "dispute", "Dispute"
        DISPUTE_WON = "dispute_won", "Dispute closed in our favour"
        ADJUSTMENT = "adjustment", "Staff adjustment"
        CREDIT_REFUND = "credit_refund", "Credits given back"
        EXPIRY = "expiry", "Credits expired"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    credits = models.BigIntegerField(help_text="Signed: positive adds credits, negative removes them.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    balance_after = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255, unique=True)
    reference = models.CharField(max_length=255, blank=True, help_text="What caused it, e.g. purchase:<id>.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    memo = models.TextField(blank=True)
    # A staff adjustment's reason is shown to the user only when the staff member said so. A
    # database default too: billing's single-statement settlement inserts entries in SQL.
    memo_shown_to_user = models.BooleanField(default=True, db_default=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["wallet", "-id"], name="ledger_wallet_recent")]
        constraints = [
            models.CheckConstraint(condition=~Q(credits=0), name="ledger_credits_non_zero"),
            models.CheckConstraint(
                condition=Q(
                    kind__in=["purchase", "bonus", "refund_reversal", "dispute_won", "credit_refund"], credits__gt=0,
                )
                | Q(kind__in=["usage", "refund", "dispute", "expiry"], credits__lt=0)
                | Q(kind="adjustment"),
                name="ledger_sign_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.credits:+,} {self.kind} ({self.idempotency_key})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise TypeError("The ledger is append-only: entries are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("The ledger is append-only: entries are never deleted.")

    def explain(self) -> str:
        """The entry in words, for the wallet page."""
        amount = abs(self.credits)
        texts: dict[str, str] = {
            self.Kind.PURCHASE: f"Bought {amount:,} credits",
            self.Kind.BONUS: f"Received {amount:,} bonus credits",
            self.Kind.USAGE: f"Used {amount:,} credits",
            self.Kind.REFUND: f"{amount:,} credits taken back because a payment was refunded",
            self.Kind.REFUND_REVERSAL: f"{amount:,} credits given back because a refund failed",
            self.Kind.DISPUTE: f"{amount:,} credits taken back because a payment was disputed",
            self.Kind.DISPUTE_WON: f"{amount:,} credits given back: the dispute was closed in our favour",
            self.Kind.ADJUSTMENT: f"Staff {'added' if self.credits > 0 else 'removed'} {amount:,} credits",
            self.Kind.CREDIT_REFUND: f"{amount:,} credits given back",
            self.Kind.EXPIRY: f"{amount:,} credits expired",
        }
        text = texts.get(self.kind, f"{self.credits:+,} credits")
        return f"{text}: {self.memo}" if self.memo and self.memo_shown_to_user else text


class Hold(models.Model):
    """Credits reserved for something that will cost at most that much (a call).

    Settled exactly once (debit what was used, release the rest) or released whole.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    credits = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    reference = models.CharField(max_length=255, help_text="What it is for, e.g. session:<id>.")
    memo = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    charged_credits = models.BigIntegerField(default=0, help_text="Debited under the hold.")
    released_credits = models.BigIntegerField(default=0)
    overshoot_credits = models.BigIntegerField(default=0, help_text="Used beyond the hold.")
    uncollected_credits = models.BigIntegerField(default=0, help_text="Overshoot the wallet could not pay.")
    entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    release_key = models.CharField(
        max_length=255, unique=True, null=True, blank=True,
        help_text="The idempotency key of the release that gave it back (a replay with it is a no-op).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="hold_status_created")]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="hold_credits_positive"),
            models.CheckConstraint(
                condition=Q(status="active", finished_at__isnull=True, charged_credits=0, released_credits=0)
                | (
                    Q(status__in=["settled", "released"], finished_at__isnull=False)
                    & Q(charged_credits__gte=0, released_credits__gte=0)
                    & Q(charged_credits__lte=models.F("credits"))
                ),
                name="hold_final_fields_consistent",
            ),
            models.CheckConstraint(
                condition=Q(overshoot_credits__gte=0, uncollected_credits__gte=0)
                & Q(uncollected_credits__lte=models.F("overshoot_credits")),
                name="hold_overshoot_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"Hold {self.pk} of {self.credits:,} ({self.status})"


class CreditGrant(models.Model):
    """Credits added to a wallet, of one category, with an optional expiry, and what is left of them.

    Every entry that adds credits makes one grant; spending takes from the grants with credits
    left in order: the one that expires first (never-expiring last), promotional before refund
    before paid at the same expiry, then the oldest. Expiry is an EXPIRY ledger entry made by a
    scheduled job for what is left. Refunds and disputes take back paid credits only. The
    invariant, checked by the tests: wallet.balance == sum(remaining) − wallet.debt.
    """

    class Category(models.TextChoices):
        PAID = "paid", "Paid"
        PROMOTIONAL = "promotional", "Promotional"
        REFUND = "refund", "Refund credit"

    class Source(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        TOP_UP = "top_up", "Auto top-up"
        SIGNUP_BONUS = "signup_bonus", "Sign-up bonus"
        PROMO_CODE = "promo_code", "Promo code"
        STAFF = "staff", "Staff grant"
        REFUND_REVERSAL = "refund_reversal", "Failed refund given back"
        DISPUTE_WON = "dispute_won", "Dispute won"
        OPENING = "opening", "Balance before credit grants"

    # Spending order within one expiry: promotional first, paid last.
    SPEND_RANK = {Category.PROMOTIONAL: 0, Category.REFUND: 1, Category.PAID: 2}

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="grants")
    category = models.CharField(max_length=12, choices=Category.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    spend_rank = models.PositiveSmallIntegerField(help_text="0 promotional, 1 refund, 2 paid (spending order).")
    credits = models.PositiveBigIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When its leftover was expired.")
    entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="grant",
        help_text="The ledger entry that added it.",
    )
    purchase = models.ForeignKey(
        "Purchase", null=True, blank=True, on_delete=models.PROTECT, related_name="grants",
    )
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["wallet", "expires_at", "spend_rank", "id"], name="grant_spend_order",
                condition=Q(remaining__gt=0),
            ),
            models.Index(fields=["expires_at"], name="grant_due_expiry", condition=Q(remaining__gt=0)),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="grant_credits_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("credits")), name="grant_remaining_in_range",
            ),
            models.CheckConstraint(
                condition=Q(expired_at__isnull=True) | Q(remaining=0), name="grant_expired_has_nothing_left",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_category_display()} grant of {self.credits:,} ({self.remaining:,} left)"


class PromoCode(models.Model):
    """A code a user redeems on the wallet page for promotional credits (made by staff)."""

    code = models.CharField(max_length=40, unique=True, help_text="Stored upper-case; matched ignoring case.")
    credits = models.PositiveIntegerField()
    grant_expires_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="The credits expire this many days after redemption; empty: never.",
    )
    valid_until = models.DateTimeField(null=True, blank=True, help_text="Last moment it can be redeemed.")
    max_redemptions = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    times_redeemed = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    memo = models.CharField(max_length=500, blank=True, help_text="Shown to the user with the credits.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="promo_credits_positive"),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(times_redeemed__lte=models.F("max_redemptions")),
                name="promo_redemptions_within_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.credits:,} credits)"


class PromoRedemption(models.Model):
    """One user's redemption of a promo code (once per wallet)."""

    code = models.ForeignKey(PromoCode, on_delete=models.PROTECT, related_name="redemptions")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="promo_redemptions")
    grant = models.OneToOneField(CreditGrant, on_delete=models.PROTECT, related_name="redemption")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["code", "wallet"], name="promo_once_per_wallet")]

    def __str__(self) -> str:
        return f"{self.code.code} by {self.wallet.user_id}"


class BillingSettings(models.Model):
    """Staff-editable billing settings (one row, pk 1): the sign-up bonus and paid credits' expiry."""

    signup_bonus_credits = models.PositiveIntegerField(default=0, help_text="Promotional credits at sign-up; 0: none.")
    signup_bonus_expires_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="The sign-up bonus expires this many days later; empty: never.",
    )
    paid_credits_expire_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Bought credits expire this many days after purchase; empty: never.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "billing settings"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="billing_settings_single_row")]

    def __str__(self) -> str:
        return "Billing settings"

    @classmethod
    def load(cls) -> "BillingSettings":
        return cls.objects.get_or_create(pk=1)[0]


class CreditPack(models.Model):
    """What can be bought. The browser names a pack by `key`; price and credits come from here."""

    key = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    active = models.BooleanField(default=True)
    order = models.PositiveIntegerField(default=0)
    stripe_price_id = models.CharField(
        max_length=255, blank=True, help_text="Optional Stripe Price; empty: an inline price from this row."
    )

    class Meta:
        ordering = ["order", "price_cents"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="pack_credits_positive"),
            # Stripe's minimum charge is about 50 cents in most currencies.
            models.CheckConstraint(condition=Q(price_cents__gte=50), name="pack_price_at_least_50"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits:,} credits)"

    @property
    def price_display(self) -> str:
        return money(self.price_cents, self.currency)


class Purchase(models.Model):
    """One attempt to buy a pack: made (pending) before its Checkout Session exists."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        PROCESSING = "processing", "Payment processing"
        PAID = "paid", "Paid"
        FAILED = "failed", "Payment failed"
        EXPIRED = "expired", "Expired"
        CANCELED = "canceled", "Canceled"
        REJECTED = "rejected", "Rejected (does not match the pack)"

    class Source(models.TextChoices):
        CHECKOUT = "checkout", "Checkout"
        AUTO_TOP_UP = "auto_top_up", "Auto top-up"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="purchases")
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.CHECKOUT)
    # An auto top-up is unique by the balance crossing that started it ("wallet:<id>:<crossing>").
    topup_key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    # A snapshot of the pack when bought: staff may change the pack afterwards.
    credits = models.PositiveIntegerField()
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=2000, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When Stripe expires the checkout session if it is not paid."
    )
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    failure_code = models.CharField(max_length=50, blank=True, help_text="Stripe's code, e.g. card_declined.")
    # amount_cents is what the buyer pays: the pack's price (subtotal) less a promotion code's
    # discount, plus tax (Stripe's amount_total once known).
    subtotal_cents = models.PositiveIntegerField(null=True, blank=True)
    discount_cents = models.PositiveIntegerField(default=0)
    tax_cents = models.PositiveIntegerField(default=0)
    invoice_id = models.CharField(max_length=255, blank=True)
    invoice_url = models.URLField(max_length=2000, blank=True, help_text="Stripe's hosted invoice page.")
    invoice_pdf = models.URLField(max_length=2000, blank=True)
    refunded_amount_cents = models.PositiveIntegerField(default=0)
    refunded_credits = models.PositiveIntegerField(default=0)
    disputed_credits = models.PositiveIntegerField(default=0)
    credited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="paid", credited_at__isnull=False) | (~Q(status="paid") & Q(credited_at__isnull=True)),
                name="purchase_paid_iff_credited",
            ),
            models.CheckConstraint(
                condition=Q(refunded_amount_cents__lte=models.F("amount_cents")), name="purchase_refund_within_amount"
            ),
        ]

    def __str__(self) -> str:
        return f"Purchase {self.public_id} ({self.credits:,} credits, {self.status})"

    @property
    def amount_display(self) -> str:
        return money(self.amount_cents, self.currency)

    @property
    def badge(self) -> str:
        """The status badge's colour class on every page: paid green, waiting orange, a failure red,
        an expired or canceled checkout (nothing happened) plain."""
        return {
            self.Status.PAID: "ok", self.Status.PENDING: "warn", self.Status.PROCESSING: "warn",
            self.Status.FAILED: "err", self.Status.REJECTED: "err",
        }.get(self.Status(self.status), "")

    @property
    def resumable(self) -> bool:
        """The buyer can still go back to its Stripe checkout and pay."""
        return (
            self.status == self.Status.PENDING
            and bool(self.checkout_url)
            and (self.expires_at is None or self.expires_at > timezone.now())
        )

    @property
    def status_message(self) -> str:
        """The one note for the user about where this purchase stands (a failure's own reason,
        when there is one, instead of the generic words, never both)."""
        credits = format_credits
        if self.status == self.Status.PAID:
            parts = [f"{credits(self.credits)} credits added."]
            if self.refunded_amount_cents >= self.amount_cents:
                parts.append(f"Refunded in full; {credits(self.refunded_credits)} credits taken back.")
            elif self.refunded_amount_cents:
                parts.append(f"Partly refunded; {credits(self.refunded_credits)} credits taken back.")
            if self.disputed_credits:
                parts.append(f"Disputed; {credits(self.disputed_credits)} credits held back.")
            return " ".join(parts)
        if self.status == self.Status.FAILED and self.failure_reason:
            return self.failure_reason
        messages: dict[str, str] = {
            self.Status.PENDING: "Waiting for payment at Stripe.",
            self.Status.PROCESSING: "Your bank payment is processing; credits arrive when it clears.",
            self.Status.FAILED: "The payment failed or was declined; nothing was charged.",
            self.Status.EXPIRED: "The checkout expired before payment; nothing was charged.",
            self.Status.CANCELED: "You canceled the checkout; nothing was charged.",
            self.Status.REJECTED: "This payment did not match the pack; staff have been told.",
        }
        return messages[self.status]


class Refund(models.Model):
    """A Stripe refund (`re_…`) of a purchase, applied to the wallet once."""

    stripe_refund_id = models.CharField(max_length=255, unique=True)
    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=30)
    credits = models.PositiveIntegerField(default=0, help_text="Credits taken back for it (0 once reversed).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.stripe_refund_id} ({self.status})"


class Dispute(models.Model):
    """A Stripe dispute (`dp_…`) of a purchase: credits clawed back while it is open."""

    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="disputes")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=30)
    is_open = models.BooleanField(default=True)
    credits = models.PositiveIntegerField(default=0, help_text="Credits clawed back for it.")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.stripe_dispute_id} ({self.status})"


class StripeEvent(models.Model):
    """Every verified webhook event, stored before it is processed (unique by Stripe's id)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        # Dead letter: it failed STRIPE_EVENT_MAX_ATTEMPTS times, nothing retries it by itself any
        # more; staff look at last_error and retry it from the admin.
        DEAD = "dead", "Dead (attempts exhausted)"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    object_id = models.CharField(max_length=255, blank=True, db_index=True)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    deliveries = models.PositiveIntegerField(default=1, help_text="Times Stripe delivered it.")
    last_error = models.TextField(blank=True)
    note = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True, help_text="When its attempts ran out.")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"
