"""Staff page "Live calls": every call in flight with its figures, updated live, with a hang-up button."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from sessions import services
from sessions.models import OPEN_STATES, Cause, RealtimeCall
from sessions.presenters import seconds_to_end


@staff_member_required
def live_calls(request):
    calls = list(
        RealtimeCall.objects.filter(state__in=OPEN_STATES).select_related("user", "assistant").order_by("created_at")
    )
    now = timezone.now()
    rows = [
        {
            "call": call,
            "tokens": sum(call.tokens.as_dict().values()),
            "seconds_left": seconds_to_end(call.expected_end_at, now=now),
            "watched": bool(call.lease_owner and call.lease_expires_at and call.lease_expires_at > now),
        }
        for call in calls
    ]
    return render(request, "supervisor/live_calls.html", {"rows": rows})


@staff_member_required
@require_POST
def hang_up(request, public_id: str):
    call = get_object_or_404(RealtimeCall, public_id=public_id)
    call = services.request_hangup(call=call, cause=Cause.STAFF_HANGUP, actor=request.user)
    messages.success(request, f"Asked OpenAI to hang up {call.public_id} ({call.state}).")
    return redirect("live_calls")
