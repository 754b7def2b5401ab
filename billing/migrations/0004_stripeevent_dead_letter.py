from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0003_purchase_canceled_expires_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="stripeevent",
            name="dead_at",
            field=models.DateTimeField(blank=True, help_text="When its attempts ran out.", null=True),
        ),
        migrations.AlterField(
            model_name="stripeevent",
            name="status",
            field=models.CharField(
                choices=[
                    ("received", "Received"),
                    ("processing", "Processing"),
                    ("processed", "Processed"),
                    ("ignored", "Ignored"),
                    ("failed", "Failed"),
                    ("dead", "Dead (attempts exhausted)"),
                ],
                db_index=True,
                default="received",
                max_length=12,
            ),
        ),
    ]
