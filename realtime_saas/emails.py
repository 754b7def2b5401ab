"""Email to one user, from templates: templates/emails/<name>_subject.txt and <name>.txt.

Every email says who to write to (SUPPORT_EMAIL, also its Reply-To) and links back to the site.
Senders call this from Celery tasks, after the change they report has committed.
"""

from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string


def send_to_user(*, to: str, template: str, context: dict[str, Any]) -> None:
    """Render and send `emails/<template>` to `to` (raises what the mail backend raises)."""
    context = {
        **context,
        "SITE_NAME": "realtime_saas",
        "SITE_URL": settings.SITE_URL,
        "SUPPORT_EMAIL": settings.SUPPORT_EMAIL,
    }
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
    body = render_to_string(f"emails/{template}.txt", context)
    EmailMessage(
        subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[to],
        reply_to=[settings.SUPPORT_EMAIL],
    ).send()
