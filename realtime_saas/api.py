"""What every API endpoint shares: one error envelope (DRF's EXCEPTION_HANDLER) and its schema.

Every error, DRF's own (validation, authentication, throttling, 404) and the apps' domain errors,
answers `{"error": {"code", "message"[, "field_errors"]}, "detail": message}` (docs/api.md): `code` is stable for
programs, `message` is a sentence a person can act on, and `detail` repeats it where DRF clients
look for it. No business logic here; apps raise `APIError` subclasses (sessions.exceptions) or
DRF exceptions with a `default_code`.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class APIError(Exception):
    """A domain error with the HTTP status and stable code the API answers with."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.retry_after = retry_after


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field_errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="Validation errors only: the messages per field of the request body.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()
    detail = serializers.CharField(help_text="The same message, where DRF clients look for it.")


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.ParseError: "invalid_request",
    exceptions.ValidationError: "invalid_request",
    exceptions.Throttled: "rate_limited",
}


def _message(detail: Any) -> str:
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_message(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_message(item) for item in detail)
    return str(detail)


def error_response(*, status_code: int, code: str, message: str, retry_after: int | None = None) -> Response:
    response = Response({"error": {"code": code, "message": message}, "detail": message}, status=status_code)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _code(exc: Exception) -> str:
    if isinstance(exc, exceptions.PermissionDenied):
        return "csrf_failed" if "CSRF" in str(exc.detail) else "permission_denied"
    known = next((code for cls, code in _DRF_CODES.items() if isinstance(exc, cls)), None)
    if known:
        return known
    # An APIException of the apps' own (e.g. billing's payment_provider_unavailable).
    return str(getattr(exc, "default_code", "") or "error")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The envelope for every failure of every API view (REST_FRAMEWORK["EXCEPTION_HANDLER"])."""
    if isinstance(exc, APIError):
        return error_response(status_code=exc.status, code=exc.code, message=exc.message,
                              retry_after=exc.retry_after)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    message = _message(getattr(exc, "detail", response.data))
    if isinstance(exc, exceptions.NotAuthenticated):
        message = "Sign in to use this endpoint."
    retry_after = response.get("Retry-After")
    error: dict[str, Any] = {"code": _code(exc), "message": message}
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        error["field_errors"] = response.data  # DRF's per-field messages, so a form can show each by its field
    response.data = {"error": error, "detail": message}
    if retry_after:
        response["Retry-After"] = retry_after
    return response
