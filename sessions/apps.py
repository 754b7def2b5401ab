from django.apps import AppConfig


class RealtimeSessionsConfig(AppConfig):
    """Realtime calls: policies, minting, SDP proxy, supervisor, metering, reconciliation.

    The label is `realtime` because `sessions` belongs to django.contrib.sessions; it is part of
    every table name of this app, so it never changes.
    """

    name = "sessions"
    label = "realtime"
    verbose_name = "Realtime calls"
    default_auto_field = "django.db.models.BigAutoField"
