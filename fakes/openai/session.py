"""Session configuration: GA defaults, merging of ``session.update``, token estimates."""

import copy
import math
import time

from fakes.openai import ids
from fakes.openai.errors import ApiError

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, "
    "but remember that you aren't a human and that you can't do human things in the real world."
)
VOICES = {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}


def default_session(model: str = DEFAULT_MODEL) -> dict:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": ids.session_id(),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": 0,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
        },
        "include": None,
    }


def unwrap_session(raw: dict | None) -> dict:
    """Accept both the documented bare session object and the ``{"session": {...}}`` wrapping."""
    if not raw:
        return {}
    if "session" in raw and isinstance(raw["session"], dict) and "type" not in raw:
        return raw["session"]
    return raw


def _deep_merge(base: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "turn_detection":
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def validate(patch: dict) -> None:
    if patch.get("type") not in (None, "realtime"):
        raise ApiError(
            400,
            "Only sessions of type 'realtime' are supported by this fake.",
            param="session.type",
            code="invalid_value",
        )
    mods = patch.get("output_modalities")
    if mods is not None and mods not in (["audio"], ["text"]):
        raise ApiError(
            400,
            "output_modalities must be ['audio'] or ['text'].",
            param="session.output_modalities",
            code="invalid_value",
        )
    voice = ((patch.get("audio") or {}).get("output") or {}).get("voice")
    if isinstance(voice, str) and voice not in VOICES:
        raise ApiError(
            400,
            f"Invalid value: '{voice}'. Supported values are: {', '.join(sorted(VOICES))}.",
            param="session.audio.output.voice",
            code="invalid_value",
        )
    mot = patch.get("max_output_tokens")
    if mot is not None and mot != "inf" and not (isinstance(mot, int) and 1 <= mot <= 4096):
        raise ApiError(
            400,
            "max_output_tokens must be an integer between 1 and 4096 or 'inf'.",
            param="session.max_output_tokens",
            code="invalid_value",
        )


def build_session(patch: dict | None) -> dict:
    patch = unwrap_session(patch)
    validate(patch)
    session = default_session(patch.get("model") or DEFAULT_MODEL)
    _deep_merge(session, {k: v for k, v in patch.items() if k not in ("id", "object")})
    return session


def apply_update(session: dict, patch: dict, *, audio_sent: bool) -> dict:
    """Apply a ``session.update`` (only fields present change); raise ApiError as OpenAI refuses."""
    patch = unwrap_session(patch)
    validate(patch)
    if patch.get("model") and patch["model"] != session["model"]:
        raise ApiError(
            400, "Cannot update a conversation's model.", param="session.model", code="cannot_update_model"
        )
    new_voice = ((patch.get("audio") or {}).get("output") or {}).get("voice")
    if new_voice and new_voice != session["audio"]["output"]["voice"] and audio_sent:
        raise ApiError(
            400,
            "Cannot update a conversation's voice if assistant audio is present.",
            param="session.audio.output.voice",
            code="cannot_update_voice",
        )
    updated = copy.deepcopy(session)
    _deep_merge(updated, {k: v for k, v in patch.items() if k not in ("id", "object", "model")})
    return updated


def text_tokens(text: str) -> int:
    # ~4 characters per token, as OpenAI's rule of thumb for English.
    return math.ceil(len(text or "") / 4)


def now_unix() -> int:
    return int(time.time())
