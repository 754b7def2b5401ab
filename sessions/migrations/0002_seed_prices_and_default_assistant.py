"""Seed the price table from OpenAI's published prices (reference §7, USD per 1M tokens) and one
active assistant, so a fresh install (`make run`) has something to talk to."""

from django.db import migrations

SOURCE = "OpenAI model pages, mid/late 2026 (shared/reference/openai-realtime.md §7)"

# model: (text in, text cached, text out, audio in, audio cached, audio out), USD per 1M tokens
PRICES_USD_PER_MTOK = {
    "gpt-realtime": ("4.00", "0.40", "16.00", "32.00", "0.40", "64.00"),
    "gpt-realtime-2025-08-28": ("4.00", "0.40", "16.00", "32.00", "0.40", "64.00"),
    "gpt-realtime-1.5": ("4.00", "0.40", "16.00", "32.00", "0.40", "64.00"),
    "gpt-realtime-2": ("4.00", "0.40", "24.00", "32.00", "0.40", "64.00"),
    "gpt-realtime-2.1": ("4.00", "0.40", "24.00", "32.00", "0.40", "64.00"),
    "gpt-realtime-mini": ("0.60", "0.06", "2.40", "10.00", "0.30", "20.00"),
    "gpt-realtime-mini-2025-10-06": ("0.60", "0.06", "2.40", "10.00", "0.30", "20.00"),
    "gpt-realtime-mini-2025-12-15": ("0.60", "0.06", "2.40", "10.00", "0.30", "20.00"),
    "gpt-realtime-2.1-mini": ("0.60", "0.06", "2.40", "10.00", "0.30", "20.00"),
    "gpt-4o-realtime-preview": ("5.00", "2.50", "20.00", "40.00", "2.50", "80.00"),
    "gpt-4o-realtime-preview-2024-12-17": ("5.00", "2.50", "20.00", "40.00", "2.50", "80.00"),
    "gpt-4o-realtime-preview-2025-06-03": ("5.00", "2.50", "20.00", "40.00", "2.50", "80.00"),
    "gpt-4o-mini-realtime-preview": ("0.60", "0.30", "2.40", "10.00", "0.30", "20.00"),
    "gpt-4o-mini-realtime-preview-2024-12-17": ("0.60", "0.30", "2.40", "10.00", "0.30", "20.00"),
}
CLASSES = ("text_in", "text_cached", "text_out", "audio_in", "audio_cached", "audio_out")


def to_microusd(usd: str) -> int:
    whole, _, frac = usd.partition(".")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("realtime", "ModelPrice")
    Assistant = apps.get_model("realtime", "Assistant")
    for model, prices in PRICES_USD_PER_MTOK.items():
        fields = {f"{name}_microusd_per_mtok": to_microusd(p) for name, p in zip(CLASSES, prices, strict=True)}
        ModelPrice.objects.update_or_create(model=model, defaults={**fields, "source": SOURCE})
    if not Assistant.objects.exists():
        Assistant.objects.create(
            name="Friendly assistant",
            is_active=True,
            model="gpt-realtime",
            voice="marin",
            instructions="You are a friendly, concise voice assistant. Keep answers short.",
            tools=[],
            max_output_tokens=1024,
            max_call_seconds=600,
            allow_proxy=True,
            allow_key=True,
            key_ttl_seconds=30,
            min_credits=10,
            max_concurrent_calls=1,
            max_starts_per_minute=5,
            markup_percent=50,
        )


class Migration(migrations.Migration):
    dependencies = [("realtime", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
