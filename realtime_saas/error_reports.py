"""What Django's error pages and error emails may show.

Django's filter hides `@sensitive_variables` / `@sensitive_post_parameters` and secret-looking
settings only when DEBUG is off. A developer's DEBUG page is often shared (a screenshot, a pasted
issue), and with real Stripe or OpenAI keys in the environment it would show them: the same
filter applies with DEBUG on too.
"""

from typing import Any

from django.views.debug import SafeExceptionReporterFilter


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request: Any) -> bool:
        return True
