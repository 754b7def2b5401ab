"""Page tests reuse billing's fixtures: the product pointed at fakes/stripe, packs, deliveries."""

from tests.billing.conftest import deliver, pack, stripe_settings  # noqa: F401  (fixtures)
