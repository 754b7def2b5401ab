"""What every API endpoint shares: one error envelope (DRF's EXCEPTION_HANDLER) and its schema.

Every error, DRF's own (validation, authentication, throttling, 404) and the apps' domain errors,
answers `{"error": {"code", "message"[, "field_errors"]}, "detail": message}` (docs/api.md): `code` is stable for
programs, `message` is a sentence a person can act on, and `detail` repeats it where DRF clients
look for it. No business logic here; apps raise `APIError` subclasses (sessions.exceptions) or
DRF exceptions with a `default_code`.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
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


# --- the statuses every operation can answer, in the schema -----------------------------------

_GENERIC_ERRORS = {
    "400": "invalid_request: the body or a parameter is malformed; `field_errors` names the fields.",
    "403": "not_authenticated (no session), csrf_failed, or permission_denied.",
    "404": "not_found: no such object of yours (other users' objects do not exist for you).",
    "405": "method_not_allowed.",
    "415": "unsupported_media_type: send application/json.",
    "429": "rate_limited: Retry-After gives the seconds to wait.",
}


class ErrorEnvelopeAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the error statuses any operation can answer (each with
    the envelope), where the view did not document them itself: 403 (session auth answers 403,
    never 401), 404 for a path with an id, 400/415 for a body, 429 for a throttled view."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ["405"]
        if self.view.get_permissions() and not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["400", "415"]
        if self.view.get_throttles():
            codes.append("429")
        if self.method == "GET" and self._is_list_view():
            codes.append("404")  # a page number past the end
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=_GENERIC_ERRORS[code]), code, direction=direction
                )
        return responses


def not_found(request: HttpRequest, unmatched: str = "") -> JsonResponse:
    """Any /api/ path no endpoint matches: the envelope's 404, not Django's HTML page."""
    message = "No API endpoint at this path."
    return JsonResponse({"error": {"code": "not_found", "message": message}, "detail": message}, status=404)
