import importlib

import factory
from django.apps import apps

from sessions.models import Assistant, ModelPrice

seed_migration = importlib.import_module("sessions.migrations.0002_seed_prices_and_default_assistant")


def ensure_prices() -> None:
    """The migration's seeded prices (transactional tests flush them away)."""
    if not ModelPrice.objects.filter(model="gpt-realtime").exists():
        seed_migration.seed(apps, None)


class AssistantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Assistant

    name = factory.Sequence(lambda n: f"Assistant {n}")
    model = "gpt-realtime"
    voice = "marin"
    instructions = "You are a test assistant."
    max_call_seconds = 600
    allow_proxy = True
    allow_key = True
    key_ttl_seconds = 30
    min_credits = 10
    max_concurrent_calls = 2
    max_starts_per_minute = 10
    markup_percent = 50

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        ensure_prices()
        return super()._create(model_class, *args, **kwargs)
