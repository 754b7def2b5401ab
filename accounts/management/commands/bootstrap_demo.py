"""Create the demo and staff accounts of `make run` if they are missing, and print how to sign in."""

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password-123"
STAFF_EMAIL = "staff@example.com"
STAFF_PASSWORD = "staff-password-123"
DEMO_CREDITS = 5000


class Command(BaseCommand):
    help = "Create a verified demo user (with demo credits) and a staff user, if missing."

    def handle(self, *args, **options) -> None:
        demo, demo_created = self._ensure(DEMO_EMAIL, DEMO_PASSWORD, staff=False)
        _, staff_created = self._ensure(STAFF_EMAIL, STAFF_PASSWORD, staff=True)
        credits_line = self._grant_demo_credits(demo)
        banner = [
            "",
            "=" * 64,
            " realtime_saas is starting on http://127.0.0.1:8000",
            f" demo user : {DEMO_EMAIL} / {DEMO_PASSWORD}" + ("  (new)" if demo_created else ""),
            f" staff user: {STAFF_EMAIL} / {STAFF_PASSWORD}" + ("  (new)" if staff_created else ""),
            f" {credits_line}",
            " admin     : http://127.0.0.1:8000/admin/",
            "=" * 64,
            "",
        ]
        self.stdout.write("\n".join(banner))

    @transaction.atomic
    def _ensure(self, email: str, password: str, *, staff: bool) -> tuple[User, bool]:
        user = User.objects.filter(email=email).first()
        created = user is None
        if user is None:
            user = (
                User.objects.create_superuser(email=email, password=password)
                if staff
                else User.objects.create_user(email=email, password=password, name="Demo")
            )
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
        return user, created

    def _grant_demo_credits(self, user: User) -> str:
        from billing import services as billing

        billing.grant(
            user=user,
            credits=DEMO_CREDITS,
            idempotency_key=f"demo-grant:{user.pk}",
            kind="adjustment",
            memo="Demo credits from make run",
        )
        return f"demo credits: {billing.available_credits(user)} available"
