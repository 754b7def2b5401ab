"""Every named API throttle, in one module (STYLE rule 12); rates live in settings
(REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], THROTTLE_* variables). They sit in front of the
assistants' own per-user limits, which count call starts in the database."""

from rest_framework.throttling import UserRateThrottle


class CallStartThrottle(UserRateThrottle):
    scope = "call_start"


class KeyMintThrottle(UserRateThrottle):
    scope = "key_mint"


class CallControlThrottle(UserRateThrottle):
    scope = "call_control"
