from django.conf import settings


def site(request) -> dict:
    return {
        "SITE_NAME": "realtime_saas",
        "DEBUG": settings.DEBUG,
        "SUPPORT_EMAIL": settings.SUPPORT_EMAIL,
        "LIVE_WEBSOCKET_URL": settings.LIVE_WEBSOCKET_URL,
    }
