"""A sensible starting set of credit packs (staff edit them in the admin)."""

from django.db import migrations

PACKS = [
    # key, name, credits, price_cents, order
    ("starter", "Starter", 1_000, 500, 10),
    ("standard", "Standard", 2_500, 1_000, 20),
    ("pro", "Pro", 6_500, 2_500, 30),
    ("team", "Team", 15_000, 5_000, 40),
]


def seed(apps, schema_editor):
    CreditPack = apps.get_model("billing", "CreditPack")
    for key, name, credits, price_cents, order in PACKS:
        CreditPack.objects.get_or_create(
            key=key,
            defaults={"name": name, "credits": credits, "price_cents": price_cents, "currency": "usd", "order": order},
        )


def unseed(apps, schema_editor):
    CreditPack = apps.get_model("billing", "CreditPack")
    CreditPack.objects.filter(key__in=[p[0] for p in PACKS], purchases__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
