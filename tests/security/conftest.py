# The billing fixtures (fakes/stripe settings, a pack) for the checkout and webhook tests.
from tests.billing.conftest import pack, stripe_settings  # noqa: F401
