import base64

import httpx
import pytest
import stripe

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")

PACK = [
    {"price_data": {"currency": "usd", "unit_amount": 1000, "product_data": {"name": "pack"}}, "quantity": 1}
]


def test_same_idempotency_key_and_params_replay_the_first_response(fake_stripe, client):
    params = {"mode": "payment", "line_items": PACK, "client_reference_id": "7"}
    first = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "purchase-1"})
    again = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "purchase-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.checkout.sessions.list().data) == 1

    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.checkout.sessions.create(
            params={**params, "client_reference_id": "8"}, options={"idempotency_key": "purchase-1"}
        )
    assert exc.value.http_status == 400
    assert exc.value.json_body["error"]["type"] == "idempotency_error"


def test_business_errors_are_replayed_but_validation_errors_are_not(fake_stripe, client, make_session):
    session = make_session()
    fake_stripe.pay(session.id)
    pi = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.refunds.create(
                params={"payment_intent": pi, "amount": 5000}, options={"idempotency_key": "r1"}
            )
        assert exc.value.code == "amount_too_large"

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"emial": "typo@example.com"}, options={"idempotency_key": "c1"})
    # The bad request never ran, so its key is still free for the corrected request.
    fixed = client.v1.customers.create(
        params={"email": "typo@example.com"}, options={"idempotency_key": "c1"}
    )
    assert fixed.email == "typo@example.com"


def test_idempotency_key_from_the_events_request(fake_stripe, client, hooked):
    customer = client.v1.customers.create(
        params={"email": "e@example.com"}, options={"idempotency_key": "cus-1"}
    )
    fake_stripe.wait_for_deliveries()
    event = hooked.events("whsec_fake")[0]
    assert event.type == "customer.created"
    assert event.request.idempotency_key == "cus-1"
    assert event.request.id == customer.last_response.request_id


def test_error_envelopes_map_to_stripe_exceptions(fake_stripe, client):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (404, "resource_missing", "id")
    assert exc.value.user_message == "No such checkout.session: 'cs_test_nope'"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": PACK, "amount": 1})
    assert (exc.value.code, exc.value.param) == ("parameter_unknown", "amount")

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": "price_x"}]})
    assert exc.value.param == "line_items[0][quantity]"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(
            params={"mode": "payment", "line_items": [{"price": "price_x", "quantity": 1}]}
        )
    assert (exc.value.code, exc.value.param) == ("resource_missing", "line_items[0][price]")

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": PACK})
    assert exc.value.param == "mode"

    with pytest.raises(stripe.AuthenticationError) as exc:
        stripe.StripeClient("sk_test_wrong", base_addresses={"api": fake_stripe.api_base}).v1.customers.list()
    assert exc.value.http_status == 401
    assert "sk_test_wrong" not in exc.value.user_message  # a key is never echoed in full


def test_auth_accepts_bearer_and_basic_only_with_the_secret_key(fake_stripe):
    url = f"{fake_stripe.api_base}/v1/customers"
    basic = base64.b64encode(f"{fake_stripe.secret_key}:".encode()).decode()
    assert httpx.get(url, headers={"Authorization": f"Bearer {fake_stripe.secret_key}"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(url, auth=("sk_test_other", "")).status_code == 401


def test_unknown_route_answers_in_stripe_envelope(fake_stripe):
    headers = {"Authorization": f"Bearer {fake_stripe.secret_key}"}
    resp = httpx.get(f"{fake_stripe.api_base}/v1/subscriptions", headers=headers)
    assert resp.status_code == 404
    assert resp.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/subscriptions)")
    resp = httpx.delete(f"{fake_stripe.api_base}/v1/customers", headers=headers)
    assert resp.status_code == 404
    resp = httpx.post(f"{fake_stripe.api_base}/v1/customers", headers=headers, json={"email": "x"})
    assert resp.status_code == 400  # Stripe takes forms, not JSON


def test_injected_server_errors_and_network_retries(fake_stripe):
    no_retry = fake_stripe.client()
    fake_stripe.fail_next(status=500)
    with pytest.raises(stripe.APIError) as exc:
        no_retry.v1.customers.create(params={"email": "x@example.com"})
    assert exc.value.http_status == 500

    retrying = fake_stripe.client(max_network_retries=2)
    fake_stripe.fail_next(count=2, status=503)
    customer = retrying.v1.customers.create(params={"email": "y@example.com"})
    assert customer.email == "y@example.com"
    assert len(retrying.v1.customers.list().data) == 1  # the failures never ran

    fake_stripe.fail_next(status=0, delay=1.0)
    slow = fake_stripe.client(http_client=stripe.HTTPXClient(timeout=0.2, allow_sync_methods=True))
    with pytest.raises(stripe.APIConnectionError):
        slow.v1.customers.list()


def test_customers_create_retrieve_update(fake_stripe, client):
    customer = client.v1.customers.create(
        params={"email": "a@example.com", "name": "A", "metadata": {"user_id": "1"}}
    )
    assert customer.id.startswith("cus_")
    assert customer.object == "customer"
    updated = client.v1.customers.update(customer.id, params={"metadata": {"user_id": "", "tier": "gold"}})
    assert updated.metadata.to_dict() == {"tier": "gold"}
    assert client.v1.customers.retrieve(customer.id).name == "A"
    assert [c.id for c in client.v1.customers.list(params={"email": "a@example.com"}).data] == [customer.id]


def test_events_list_filters_and_pagination(fake_stripe, client):
    for n in range(5):
        client.v1.customers.create(params={"email": f"{n}@example.com"})
    client.v1.prices.create(params={"currency": "usd", "unit_amount": 1, "product_data": {"name": "p"}})
    page = client.v1.events.list(params={"type": "customer.created", "limit": 2})
    assert (len(page.data), page.has_more) == (2, True)
    assert page.data[0].data.object.email == "4@example.com"  # newest first
    rest = client.v1.events.list(params={"type": "customer.created", "starting_after": page.data[-1].id})
    assert [e.data.object.email for e in rest.data] == ["2@example.com", "1@example.com", "0@example.com"]
    assert [e.type for e in client.v1.events.list(params={"type": "price.*"}).data] == ["price.created"]
    assert len(list(client.v1.events.list(params={"limit": 2}).auto_paging_iter())) == 6
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve("evt_missing")


def test_form_encoding_of_nested_arrays_and_metadata_with_digit_keys(fake_stripe, client):
    customer = client.v1.customers.create(params={"metadata": {"0": "zero", "1": "one"}})
    assert customer.metadata.to_dict() == {"0": "zero", "1": "one"}
    raw = httpx.post(
        f"{fake_stripe.api_base}/v1/checkout/sessions",
        headers={"Authorization": f"Bearer {fake_stripe.secret_key}"},
        data={
            "mode": "payment",
            "line_items[][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "300",
            "line_items[0][price_data][product_data][name]": "x",
            "line_items[0][quantity]": "2",
            "expand[]": "line_items",
        },
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["line_items"]["data"][0]["amount_total"] == 600
