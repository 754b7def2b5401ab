# Supervisor (issue 6): one metered usage row per response. Written for UsageRecord alone, so that
# models other engineers are still adding to this app get migrations of their own.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("realtime", "0002_seed_prices_and_default_assistant"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("response_id", models.CharField(help_text="resp_… or item_…:index for a transcription.", max_length=100)),
                (
                    "kind",
                    models.CharField(
                        choices=[("response", "response"), ("transcription", "input transcription")],
                        default="response",
                        max_length=16,
                    ),
                ),
                ("at", models.DateTimeField()),
                ("text_in_tokens", models.PositiveBigIntegerField(default=0)),
                ("text_cached_tokens", models.PositiveBigIntegerField(default=0)),
                ("text_out_tokens", models.PositiveBigIntegerField(default=0)),
                ("audio_in_tokens", models.PositiveBigIntegerField(default=0)),
                ("audio_cached_tokens", models.PositiveBigIntegerField(default=0)),
                ("audio_out_tokens", models.PositiveBigIntegerField(default=0)),
                ("cost_microusd", models.PositiveBigIntegerField(default=0)),
                (
                    "call",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage_records",
                        to="realtime.realtimecall",
                    ),
                ),
            ],
            options={
                "ordering": ["at", "pk"],
                "constraints": [
                    models.UniqueConstraint(fields=("call", "response_id"), name="usage_record_once_per_response")
                ],
            },
        ),
    ]
