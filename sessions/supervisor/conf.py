"""Supervisor settings, from Django settings (realtime_saas/settings.py, `SUPERVISOR_*`)."""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class SupervisorConf:
    lease_seconds: float = 15.0  # a lease not renewed for this long is free to take
    renew_seconds: float = 3.0  # how often the holder renews its leases
    poll_seconds: float = 0.5  # how often new (or orphaned) calls are looked for
    check_seconds: float = 0.5  # how often watched calls are checked (staff hangup, suspension, time)
    attach_grace_seconds: float = 20.0  # a call not attached by then is hung up (fail closed)
    attach_backoff_initial: float = 0.1
    attach_backoff_max: float = 2.0
    ending_timeout_seconds: float = 5.0  # after our hangup, settle even if the sideband stays open
    warn_seconds: float = 60.0  # warn when this little time is left …
    warn_fraction: float = 0.10  # … or this little of the hold
    wrap_up_message: str = ""  # if set, told to the model over the sideband at the warning
    # A partial hold ends when its credits cannot pay for a response this long (≈ 2.5 s of audio).
    min_response_tokens: int = 50
    db_threads: int = 4
    claim_batch: int = 200
    live_push: bool = True

    @classmethod
    def from_settings(cls, **overrides) -> "SupervisorConf":
        values = {}
        for name in cls.__dataclass_fields__:
            key = "SUPERVISOR_" + name.upper()
            if hasattr(settings, key):
                values[name] = getattr(settings, key)
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            values["db_threads"] = 1  # SQLite has one writer; more threads only queue on its lock
        values.update(overrides)
        return cls(**values)
