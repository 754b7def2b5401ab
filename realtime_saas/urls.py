from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAdminUser

from realtime_saas import views
from realtime_saas.api_router import api_urlpatterns
from realtime_saas.metrics import web_metrics_view

admin.site.site_header = "realtime_saas staff"
admin.site.site_title = "realtime_saas"
# Staff sign in through allauth like everyone else, so its checks (verified email, suspension)
# and its login limits (ACCOUNT_RATE_LIMITS "login_failed") apply to the admin too: allauth's
# documented decorator sends visitors to its login and refuses (403) a signed-in non-staff user
# the admin's own form. (mypy refuses any assignment to a method, even this deliberate wrap.)
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the pages link to; lazy: the (hashed) static URL is
    # known only once the app is ready.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("favicon.ico"), permanent=True)),
    path("readyz", views.readyz, name="readyz"),
    # Prometheus (token or network allowlist; docs/operations.md).
    path("metrics", web_metrics_view, name="metrics"),
    path("accounts/", include("allauth.urls")),
    path("account/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[IsAdminUser]),
        name="api-docs",
    ),
    path("api/", include(api_urlpatterns)),
    path("", include("billing.urls")),
    path("", include("sessions.urls")),
]
