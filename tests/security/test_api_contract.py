"""The API's contract: unknown /api/ paths answer the JSON envelope, nullable fields are declared
nullable, and every operation's schema documents the error statuses it can answer."""

import pytest
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/nope/", "/api/calls/abc/nope", "/api/billing/wallet"])
def test_an_unknown_api_path_answers_the_json_envelope(alice_client, client, path):
    for who in (alice_client, client):
        response = who.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_times_that_can_be_null_are_declared_nullable(schema):
    call = schema["components"]["schemas"]["Call"]["properties"]
    assert call["seconds_left"]["nullable"] is True
    assert call["duration_seconds"]["nullable"] is True


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_documents_its_error_statuses_with_the_envelope(schema):
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        expected = {"403"}
        if "{" in path:
            expected.add("404")
        if method in ("post", "put", "patch"):
            expected |= {"400", "415"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for code in expected:
            body = responses[code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_throttled_operations_document_429(schema):
    throttled = {("post", "/api/billing/checkout/"), ("post", "/api/calls/"), ("post", "/api/calls/{call_id}/hangup"),
                 ("post", "/api/calls/{call_id}/attach"), ("post", "/api/client-secrets/")}
    documented = {(method, path) for path, method, op in _operations(schema) if "429" in op["responses"]}
    assert throttled <= documented
