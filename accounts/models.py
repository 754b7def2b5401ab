from typing import Any, ClassVar

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields: Any) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields: Any) -> "User":
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields: Any) -> "User":
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if not extra_fields["is_staff"] or not extra_fields["is_superuser"]:
            raise ValueError("A superuser must have is_staff=True and is_superuser=True.")
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """An end user or a staff member. The email address is the login; there is no username."""

    # None removes the inherited field (Django's documented way); django-stubs types these three
    # as the str fields of AbstractUser and cannot express their removal.
    username = None  # type: ignore[assignment]
    first_name = None  # type: ignore[assignment]
    last_name = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    name = models.CharField(max_length=150, blank=True)

    # Suspension is separate from is_active so that staff can tell "blocked for a reason"
    # from "deactivated", and so that the reason can be shown to the user.
    is_suspended = models.BooleanField(default=False, db_index=True)
    suspended_reason = models.CharField(max_length=500, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    # Key mode (a client secret handed to the browser) is withdrawn automatically when a key-mode
    # window's reconciliation finds usage we did not meter; staff can restore it.
    key_mode_withdrawn_at = models.DateTimeField(null=True, blank=True)
    key_mode_withdrawn_reason = models.CharField(max_length=500, blank=True)
    # The user's IANA time zone: their calendar month for the spending cap and auto top-up limits.
    time_zone = models.CharField(max_length=64, default="UTC")

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    # django-stubs requires AbstractUser's manager to be auth's UserManager (username first in
    # create_user); Django does not, and ours creates users by email.
    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    class Meta:
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_suspended=False) | models.Q(suspended_at__isnull=False),
                name="user_suspended_has_timestamp",
            )
        ]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]
