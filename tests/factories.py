"""Factories shared by every app's tests. App-specific ones live in tests/<app>/factories.py."""

import factory
from allauth.account.models import EmailAddress

from accounts.models import User
from billing import services as billing
from billing.models import LedgerEntry, Wallet

DEFAULT_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("first_name")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def verified(self, create, extracted, **kwargs):
        """A verified primary address, as after signup and confirmation (pass verified=False to skip)."""
        if create:
            self.save()
            if extracted is not False:
                EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)


class StaffFactory(UserFactory):
    is_staff = True
    is_superuser = True


def fund(user: User, credits: int = 1000, *, key: str = "fund") -> LedgerEntry:
    """Credits granted through billing's one write path (a bonus), idempotent per user and `key`."""
    return billing.grant(user=user, credits=credits, idempotency_key=f"{key}:{user.pk}", kind=LedgerEntry.Kind.BONUS)


def wallet_of(user: User) -> Wallet:
    """The user's wallet as the database holds it now (created empty if they have none yet)."""
    return billing.get_wallet(user)
