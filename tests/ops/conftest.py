# billing's fake-Stripe fixtures (a configured fake Stripe, a credit pack) serve these tests too.
from tests.billing.conftest import pack, stripe_settings  # noqa: F401
