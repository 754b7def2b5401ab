import factory

from sessions.models import Assistant


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
