"""Wallets made before credit grants: what they hold becomes one paid grant that never expires
(source "opening"); a negative balance becomes debt. Afterwards balance == sum(remaining) − debt."""

from django.db import migrations


def open_grants(apps, schema_editor):
    Wallet = apps.get_model("billing", "Wallet")
    CreditGrant = apps.get_model("billing", "CreditGrant")
    for wallet in Wallet.objects.exclude(balance=0).iterator():
        if wallet.balance > 0:
            CreditGrant.objects.create(
                wallet=wallet, category="paid", source="opening", spend_rank=2,
                credits=wallet.balance, remaining=wallet.balance,
            )
        else:
            Wallet.objects.filter(pk=wallet.pk).update(debt=-wallet.balance)


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_credit_lifecycle")]

    operations = [migrations.RunPython(open_grants, migrations.RunPython.noop)]
