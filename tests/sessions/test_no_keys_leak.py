"""No key (`sk-…`, `ek_…`) in our responses (but the key-mode mint), in the database, or in logs."""

import logging

from django.db import connection

from tests.sessions.helpers import find_keys


def all_text_in_the_database() -> str:
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            description = connection.introspection.get_table_description(cursor, table)
            names = [connection.ops.quote_name(col.name) for col in description]
            cursor.execute(f"SELECT {', '.join(names)} FROM {connection.ops.quote_name(table)}")
            chunks.extend(str(value) for row in cursor.fetchall() for value in row if isinstance(value, str | bytes))
    return "\n".join(chunks)


def test_no_key_reaches_responses_the_database_or_logs(alice_client, funded_alice, assistant, offer_sdp,
                                                       openai_settings, caplog):
    caplog.set_level(logging.DEBUG)
    responses = []

    def post_sdp(offer):
        response = alice_client.post(f"/api/calls/?assistant={assistant.pk}", data=offer,
                                     content_type="application/sdp")
        responses.append(response)
        return response

    call_id = post_sdp(offer_sdp)["X-Call-Id"]
    for fault in (500, 429, "timeout"):
        openai_settings.fault("calls.create", fault, timeout_seconds=3)
        post_sdp(offer_sdp)
    post_sdp("not an offer")
    openai_settings.fault("calls.hangup", 500, count=5)
    responses.append(alice_client.post(f"/api/calls/{call_id}/hangup"))
    mint = alice_client.post("/api/client-secrets/", data={"assistant": assistant.pk}, content_type="application/json")
    secret = mint.json()["client_secret"]
    openai_settings.fault("client_secrets", 401)
    responses.append(alice_client.post("/api/client-secrets/", data={"assistant": assistant.pk},
                                       content_type="application/json"))
    responses.append(alice_client.get("/api/calls/"))
    responses.append(alice_client.get(f"/api/calls/{mint.json()['call']}"))

    assert secret.startswith("ek_")
    for response in responses:
        text = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
        headers = str(dict(response.items()))
        assert find_keys(text + headers) == [], response
    database = all_text_in_the_database()
    assert secret not in database and openai_settings.project_key not in database
    assert find_keys(database) == []
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in logs and openai_settings.project_key not in logs
    assert find_keys(logs) == []
