"""allauth's sign-up and password-reset forms, hardened against email squatting and enumeration.

An address counts as someone's only when it is verified on their account, or it is the address
they signed up with (`User.email`). An unverified address a user merely added to their account
(allauth lets anyone add any address) therefore neither blocks its real owner's sign-up nor
receives a password reset for that account; when the owner verifies it, the unverified copies on
other accounts are removed.
"""

from __future__ import annotations

from typing import Any

from allauth.account.forms import ResetPasswordForm as AllauthResetPasswordForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from allauth.account.models import EmailAddress
from allauth.account.signals import email_confirmed, user_signed_up
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import User


def _owned_by_someone(email: str) -> bool:
    return (
        EmailAddress.objects.filter(email__iexact=email, verified=True).exists()
        or User.objects.filter(email__iexact=email).exists()
    )


def _owns(user: Any, email: str) -> bool:
    if (getattr(user, "email", "") or "").lower() == email.lower():
        return True
    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()


class SignupForm(AllauthSignupForm):
    account_already_exists: bool

    def validate_unique_email(self, value: str) -> str:
        email: str = super().validate_unique_email(value)
        if self.account_already_exists and not _owned_by_someone(email):
            # Only unverified copies on other accounts: the address is free for its owner.
            self.account_already_exists = False
        return email

    def try_save(self, request: HttpRequest) -> Any:
        if self.account_already_exists:
            # allauth answers exactly as for a new account and sends one email either way; it skips
            # the password hash, the slow part, which gave existing addresses away by timing.
            make_password(self.cleaned_data.get("password1"))
        return super().try_save(request)


class ResetPasswordForm(AllauthResetPasswordForm):
    users: list[Any]

    def clean_email(self) -> str:
        email: str = super().clean_email()
        self.users = [user for user in self.users if _owns(user, email)]
        return email


@receiver(email_confirmed)
def _drop_unverified_copies(sender: Any, request: HttpRequest | None, email_address: EmailAddress, **kwargs: Any) -> None:
    EmailAddress.objects.filter(email__iexact=email_address.email, verified=False).exclude(
        user_id=email_address.user_id
    ).delete()


@receiver(user_signed_up)
def _grant_signup_bonus(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    """The sign-up bonus staff set in BillingSettings, once per user (billing's idempotency key
    `signup_bonus:<user id>`), after the new account is committed. Sign-up needs a verified
    address before the credits can be used (ACCOUNT_EMAIL_VERIFICATION is mandatory)."""
    from billing import services as billing

    transaction.on_commit(lambda: billing.grant_signup_bonus(user=user))
