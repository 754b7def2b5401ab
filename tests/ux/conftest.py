"""Fixtures of other test packages that the user-experience tests reuse."""

from tests.billing.conftest import pack, stripe_settings  # noqa: F401  (pytest fixtures)
from tests.e2e.conftest import open_browser  # noqa: F401  (pytest fixture)
