from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from realtime_saas import views
from realtime_saas.api_router import api_urlpatterns

admin.site.site_header = "realtime_saas staff"
admin.site.site_title = "realtime_saas"

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/", include("allauth.urls")),
    path("account/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        staff_member_required(SpectacularSwaggerView.as_view(url_name="api-schema"), login_url="admin:login"),
        name="api-docs",
    ),
    path("api/", include(api_urlpatterns)),
    path("", include("billing.urls")),
    path("", include("sessions.urls")),
]
