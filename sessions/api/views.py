"""REST endpoints for assistants and calls. They parse, call sessions.services, and present.

Errors are `{"error": {"code", "message"}, "detail": message}` (realtime_saas.api, docs/api.md).
"""

from django.conf import settings
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response

from realtime_saas.api import ErrorSerializer
from realtime_saas.throttles import CallControlThrottle, CallStartThrottle, KeyMintThrottle
from sessions import exceptions as errors
from sessions import openai_client, presenters, services
from sessions.api.serializers import (
    AssistantSerializer,
    AttachRequestSerializer,
    CallSerializer,
    ClientSecretRequestSerializer,
    ClientSecretSerializer,
)
from sessions.models import Assistant, Cause, RealtimeCall


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class SDPParser(BaseParser):
    """`application/sdp` bodies as text, refused above REALTIME_MAX_SDP_BYTES without reading more."""

    media_type = "application/sdp"

    # djangorestframework-stubs declare BaseParser.parse as returning Mapping | DataAndFiles, but DRF
    # makes request.data whatever a parser returns: this one returns the SDP text.
    def parse(self, stream, media_type=None, parser_context=None) -> str:  # type: ignore[override]
        limit = settings.REALTIME_MAX_SDP_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"The SDP offer is larger than {limit // 1024} KB.")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidOffer("The SDP offer must be UTF-8 text.") from None


class SessionsAPIView(generics.GenericAPIView):
    def perform_content_negotiation(self, request, force=False):
        # A client that asks for application/sdp still gets its errors, in JSON.
        return super().perform_content_negotiation(request, force=True)


class OwnCallMixin:
    lookup_field: str = "public_id"
    lookup_url_kwarg: str | None = "call_id"  # as GenericAPIView declares it

    def get_queryset(self):
        # Other users' calls do not exist as far as this user can tell (404, never 403).
        return (
            RealtimeCall.objects.filter(user=self.request.user)
            .select_related("assistant")
            .prefetch_related("events")
        )


def _errors(*pairs: tuple[int, str]) -> dict:
    responses: dict = {}
    for code, description in pairs:
        responses[code] = OpenApiResponse(ErrorSerializer, description=description)
    return responses


AUTH_ERRORS = ((403, "not_authenticated (no session), csrf_failed."),)
START_ERRORS = (
    (400, "invalid_offer (the reason is in the message) or invalid_assistant."),
    (402, "insufficient_credits (the message says how many are needed and available) or wallet_blocked."),
    (403, "not_authenticated, csrf_failed, email_unverified or account_suspended."),
    (429, "concurrency_limit or rate_limited; Retry-After gives the seconds to wait."),
    (502, "upstream_error: OpenAI failed. Nothing was charged."),
    (503, "upstream_unavailable: OpenAI timed out, is unreachable or rate limited us (Retry-After). "
          "Nothing was charged."),
)
MINT_ERRORS = (
    *(pair for pair in START_ERRORS if pair[0] != 403),
    (403, "not_authenticated, csrf_failed, email_unverified, account_suspended or key_mode_withdrawn "
          "(a key-mode window's reconciliation found usage we did not meter; staff can restore it)."),
    (409, "secret_outstanding: a client secret whose call is not reported yet exists; Retry-After gives "
          "the seconds until it expires."),
)


@extend_schema(tags=["assistants"], responses={200: AssistantSerializer(many=True), **_errors(*AUTH_ERRORS)})
class AssistantListView(SessionsAPIView, generics.ListAPIView):
    """Assistants a user can call."""

    serializer_class = AssistantSerializer
    queryset = Assistant.objects.filter(is_active=True)


class CallListView(OwnCallMixin, SessionsAPIView, generics.ListAPIView):
    serializer_class = CallSerializer
    parser_classes = [SDPParser]

    def get_throttles(self):
        return [CallStartThrottle()] if self.request.method == "POST" else super().get_throttles()

    @extend_schema(tags=["calls"], summary="Your calls, newest first", responses={200: CallSerializer(many=True),
                                                                                  **_errors(*AUTH_ERRORS)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["calls"],
        summary="Start a call (proxy mode)",
        description=(
            "Send the browser's SDP offer (made with an `oai-events` data channel) as the body, "
            "`Content-Type: application/sdp`, at most 64 KB. Credits for the call's maximum length are "
            "held first; OpenAI creates the call with the assistant's server-side configuration, and the "
            "SDP answer comes back with `Location` and `X-Call-Id` naming our call resource. Browsers "
            "authenticate with the session cookie and send the CSRF token as `X-CSRFToken`."
        ),
        parameters=[OpenApiParameter("assistant", OpenApiTypes.INT, OpenApiParameter.QUERY, required=True,
                                     description="The assistant's id (from /api/assistants/).")],
        request={"application/sdp": OpenApiTypes.STR},
        responses={
            (201, "application/sdp"): OpenApiResponse(
                OpenApiTypes.STR,
                description="The SDP answer. Headers: `Location: /api/calls/{id}`, `X-Call-Id: {id}`.",
            ),
            **_errors(*START_ERRORS, (413, "payload_too_large: the offer is over 64 KB."),
                      (415, "unsupported_media_type: send Content-Type application/sdp.")),
        },
        examples=[OpenApiExample("offer", value="v=0\r\no=- 0 2 IN IP4 127.0.0.1\r\n...", request_only=True,
                                 media_type="application/sdp")],
    )
    def post(self, request, *args, **kwargs):
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.REALTIME_MAX_SDP_BYTES:
            raise PayloadTooLarge(f"The SDP offer is larger than {settings.REALTIME_MAX_SDP_BYTES // 1024} KB.")
        offer = request.data if isinstance(request.data, str) else ""  # an empty body parses as {}
        call, answer = services.start_proxy_call(
            user=request.user, assistant_id=request.query_params.get("assistant"), offer_sdp=offer
        )
        location = reverse("realtime-api:call-detail", kwargs={"call_id": call.public_id})
        return HttpResponse(
            answer, status=201, content_type="application/sdp",
            headers={"Location": location, "X-Call-Id": call.public_id, "Cache-Control": "no-store"},
        )


@extend_schema(tags=["calls"], responses={200: CallSerializer, **_errors(*AUTH_ERRORS, (404, "not_found"))})
class CallDetailView(OwnCallMixin, SessionsAPIView, generics.RetrieveAPIView):
    """One of your calls: state, timeline, tokens, cost and credits."""

    serializer_class = CallSerializer

    def retrieve(self, request, *args, **kwargs):
        # The Talk page polls this every 0.5-3 s during a call: the call, its assistant and its
        # timeline in one statement (services.call_with_timeline), rendered as CallSerializer does.
        found = services.call_with_timeline(user=request.user, public_id=kwargs["call_id"])
        if found is None:
            raise Http404("No RealtimeCall matches the given query.")
        call, timeline = found
        return Response(presenters.call_payload(call, events=True, timeline=timeline))


class CallHangupView(OwnCallMixin, SessionsAPIView):
    serializer_class = CallSerializer
    throttle_classes = [CallControlThrottle]

    @extend_schema(
        tags=["calls"],
        summary="Hang up a call",
        description="Asks OpenAI to end the call. Idempotent; the call is `ending` or already final.",
        request=None,
        responses={202: CallSerializer, **_errors(*AUTH_ERRORS, (404, "not_found"), (429, "rate_limited"))},
    )
    def get_queryset(self):
        # The timeline is read once the hangup is recorded (services.request_hangup), not before.
        return RealtimeCall.objects.filter(user=self.request.user).select_related("assistant")

    def post(self, request, *args, **kwargs):
        call = services.request_hangup(call=self.get_object(), cause=Cause.USER_HANGUP, actor=request.user)
        return Response(self.get_serializer(call).data, status=202)


class CallAttachView(OwnCallMixin, SessionsAPIView):
    serializer_class = CallSerializer
    parser_classes = [JSONParser]
    throttle_classes = [CallControlThrottle]

    @extend_schema(
        tags=["key mode"],
        summary="Report the OpenAI call id a key-mode secret started",
        description="Lets the server meter and hang up the call. A key-mode call that never reports its "
        "call id is charged its full hold when its window closes.",
        request=AttachRequestSerializer,
        responses={
            200: CallSerializer,
            **_errors((400, "invalid_call_id"), *AUTH_ERRORS, (404, "not_found"),
                      (409, "not_key_mode, already_attached, call_id_taken or call_not_open")),
        },
    )
    def post(self, request, *args, **kwargs):
        call = self.get_object()
        body = AttachRequestSerializer(data=request.data)
        if not body.is_valid():
            raise errors.CallError("call_id must be the OpenAI call id (rtc_…).", code="invalid_call_id")
        call = services.attach_call_id(user=request.user, call=call, openai_call_id=body.validated_data["call_id"])
        return Response(self.get_serializer(self.get_queryset().get(pk=call.pk)).data)


class ClientSecretView(SessionsAPIView):
    serializer_class = ClientSecretSerializer
    parser_classes = [JSONParser]
    throttle_classes = [KeyMintThrottle]

    @extend_schema(
        tags=["key mode"],
        summary="Mint a client secret (key mode)",
        description=(
            "Same checks and hold as a proxy call. The secret carries the assistant's configuration and "
            "lives only the assistant's key lifetime (10–60 s); it is returned once and never stored. "
            "Report the OpenAI call id to `/api/calls/{call}/attach`: a call that never reports it is "
            "charged its full hold when its window (expiry + maximum length) closes. One unreported "
            "secret per user at a time; each window is reconciled with OpenAI's usage within minutes."
        ),
        request=ClientSecretRequestSerializer,
        responses={201: ClientSecretSerializer, **_errors(*MINT_ERRORS)},
    )
    def post(self, request, *args, **kwargs):
        body = ClientSecretRequestSerializer(data=request.data)
        if not body.is_valid():
            raise errors.InvalidAssistant("Choose an active assistant (its id from /api/assistants/).")
        call, minted = services.mint_client_secret(user=request.user, assistant_id=body.validated_data["assistant"])
        data = {
            "call": call.public_id,
            "client_secret": minted.value,
            "expires_at": minted.expires_at,
            "model": minted.model,
            "calls_url": openai_client.calls_url(),
        }
        return Response(data, status=201, headers={"Cache-Control": "no-store"})
