import factory

from billing.models import CreditPack
from tests.factories import UserFactory  # noqa: F401  (re-exported for billing tests)


class CreditPackFactory(factory.django.DjangoModelFactory[CreditPack]):
    class Meta:
        model = CreditPack
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"pack{n}")
    name = factory.Sequence(lambda n: f"Pack {n}")
    credits = 1000
    price_cents = 1000
    currency = "usd"
