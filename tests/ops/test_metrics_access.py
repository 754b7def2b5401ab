"""Who may read the metrics (realtime_saas.metrics.refusal): the bearer token, or an address in the
allowed networks; nobody when neither is configured."""

import pytest

from realtime_saas.metrics import call_start_outcome, refusal

TOKEN = "a-metrics-token-of-32-characters"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []


@pytest.fixture
def networks(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", ["10.0.0.0/8", "fd00::/8"]


def test_nobody_reads_them_when_neither_is_configured(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []
    assert refusal(authorization=f"Bearer {TOKEN}", client_address="127.0.0.1") == (
        403, "Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_NETWORKS.")


def test_the_bearer_token_is_required_and_compared_exactly(token):
    assert refusal(authorization=f"Bearer {TOKEN}", client_address="203.0.113.9") is None
    assert refusal(authorization=f"bearer {TOKEN}", client_address="203.0.113.9") is None  # the scheme's case
    assert refusal(authorization=f"Bearer {TOKEN}x", client_address="203.0.113.9") == (401, "The bearer token is wrong.")
    assert refusal(authorization=f"Basic {TOKEN}", client_address="203.0.113.9") == (401, "The bearer token is wrong.")
    assert refusal(authorization=None, client_address="127.0.0.1") == (
        401, "Send Authorization: Bearer <METRICS_TOKEN>.")


def test_an_address_in_the_allowed_networks_needs_no_token(networks):
    assert refusal(authorization=None, client_address="10.1.2.3") is None
    assert refusal(authorization=None, client_address="fd12::1") is None
    refused = (403, "This address may not read the metrics (METRICS_ALLOWED_NETWORKS).")
    assert refusal(authorization=None, client_address="11.1.2.3") == refused
    assert refusal(authorization=None, client_address="not-an-address") == refused
    assert refusal(authorization=None, client_address=None) == refused


def test_either_one_is_enough_when_both_are_configured(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, ["10.0.0.0/8"]
    assert refusal(authorization=None, client_address="10.1.2.3") is None
    assert refusal(authorization=f"Bearer {TOKEN}", client_address="192.0.2.1") is None
    assert refusal(authorization=None, client_address="192.0.2.1")[0] == 401


@pytest.mark.parametrize(("status", "outcome"), [
    (201, "started"), (402, "refused_credits"), (429, "refused_limits"), (403, "refused_account"),
    (401, "refused_account"), (400, "refused_invalid"), (409, "refused_invalid"), (502, "upstream_error"),
    (503, "upstream_error"),
])
def test_a_call_start_s_outcome_comes_from_its_status(status, outcome):
    assert call_start_outcome(status) == outcome
