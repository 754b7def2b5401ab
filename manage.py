#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

HELP_ARGS = {"-h", "--help", "help"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load the settings now, so their refusal is what we report
    except ImproperlyConfigured as exc:
        if not HELP_ARGS.intersection(sys.argv[1:]) and len(sys.argv) > 1:
            # Django would carry on and fail later with "Models aren't loaded yet", hiding the reason.
            sys.exit(f"Settings refused to load: {exc}\n(For local development: DEBUG=true, or use make.)")
        # Help runs nothing: it is described with the development defaults instead of refused.
        os.environ["DEBUG"] = "true"
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
