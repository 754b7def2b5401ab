"""An assistant's session policy as the supervisor enforces it over the sideband.

The browser owns the call's `oai-events` data channel: it can send `session.update` and
`response.create` whenever it likes (PITFALLS). OpenAI answers every accepted `session.update` with
a `session.updated` carrying the full effective session, and announces every response with
`response.created` (reference §3, §5: "two live connections to one session", the sideband receives
the session's server events). So the supervisor sees each change and each response, and compares
them with the policy here. Plain functions over dicts: no Django, no I/O.
"""

from __future__ import annotations

# What the supervisor compares (issue 11): instructions, tools, voice, model, output token limit,
# turn detection and modalities. Everything else in a session is left to the browser.
SESSION_FIELDS = ("instructions", "tools", "voice", "model", "max_output_tokens", "turn_detection",
                  "output_modalities")


def _voice(session: dict) -> object:
    return ((session.get("audio") or {}).get("output") or {}).get("voice")


def _turn_detection(session: dict) -> object:
    return ((session.get("audio") or {}).get("input") or {}).get("turn_detection")


def _same_model(policy_model: str, model: object) -> bool:
    # OpenAI may answer with the resolved snapshot ("gpt-realtime-2025-08-28", reference §1.1.2).
    return model == policy_model or (isinstance(model, str) and model.startswith(policy_model + "-"))


def _limit(value: object) -> float:
    return float("inf") if value in (None, "inf") else float(value)  # type: ignore[arg-type]


def _turn_detection_differs(policy_td: dict, td: object, *, turned_on: bool) -> bool:
    """Every key the policy names must have its value. Calls start with turn detection off
    (null) until the supervisor's own `session.update` turns it on: before that, null is expected."""
    if td is None:
        return turned_on
    if not isinstance(td, dict):
        return True
    return any(td.get(key) != value for key, value in policy_td.items())


def session_deviations(policy: dict, session: dict, *, turned_on: bool = True) -> list[str]:
    """The policy fields a `session.updated`'s session differs on (empty when it complies).

    `turned_on`: the supervisor has seen its own turn detection take effect on this call.
    """
    found = []
    if (session.get("instructions") or "") != (policy.get("instructions") or ""):
        found.append("instructions")
    if list(session.get("tools") or []) != list(policy.get("tools") or []):
        found.append("tools")
    if _voice(session) != _voice(policy):
        found.append("voice")
    if "model" in session and not _same_model(policy["model"], session.get("model")):
        found.append("model")
    if _limit(session.get("max_output_tokens")) != _limit(policy.get("max_output_tokens")):
        found.append("max_output_tokens")
    policy_td = _turn_detection(policy)
    if _turn_detection_differs(policy_td if isinstance(policy_td, dict) else {}, _turn_detection(session),
                               turned_on=turned_on):
        found.append("turn_detection")
    if list(session.get("output_modalities") or ["audio"]) != list(policy.get("output_modalities") or ["audio"]):
        found.append("output_modalities")
    return found


def response_excesses(policy: dict, response: dict) -> list[str]:
    """The visible settings of a response (`response.created`/`response.done`, reference §5) that
    go beyond the policy: a larger token limit, other modalities, another voice."""
    found = []
    if "max_output_tokens" in response and _limit(response["max_output_tokens"]) > _limit(
        policy.get("max_output_tokens")
    ):
        found.append("max_output_tokens")
    modalities = response.get("output_modalities")
    if modalities is not None and list(modalities) != list(policy.get("output_modalities") or ["audio"]):
        found.append("output_modalities")
    voice = _voice(response)
    if voice is not None and voice != _voice(policy):
        found.append("voice")
    return found


def restore_event(policy: dict, *, event_id: str) -> dict:
    """The `session.update` that puts every policy field back (the model cannot change, so it is
    not sent: reference §3)."""
    session = {key: value for key, value in policy.items() if key != "model"}
    return {"type": "session.update", "event_id": event_id, "session": session}


def greeting_event(*, instructions: str, event_id: str) -> dict:
    """The `response.create` that has the assistant speak first."""
    response: dict = {}
    if instructions:
        response["instructions"] = instructions
    event: dict = {"type": "response.create", "event_id": event_id}
    if response:
        event["response"] = response
    return event


def describe(fields: list[str]) -> str:
    return ", ".join(field.replace("_", " ") for field in fields)
