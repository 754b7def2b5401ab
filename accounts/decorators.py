from functools import wraps

from django.contrib import messages
from django.shortcuts import redirect

from accounts.services import is_email_verified


def verified_email_required(view):
    """Pages for customers need a verified address. allauth enforces it at login; this covers
    accounts created another way (e.g. by staff in the admin)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_email_verified(request.user):
            from allauth.account.models import EmailAddress

            # The email page lists this address with a "Re-send verification" button.
            EmailAddress.objects.get_or_create(
                user=request.user, email=request.user.email, defaults={"primary": True, "verified": False}
            )
            messages.warning(
                request, "Please confirm your email address first: re-send the verification link below."
            )
            return redirect("account_email")
        return view(request, *args, **kwargs)

    return wrapper
