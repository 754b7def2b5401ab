"""HTML pages of the sessions app (the API lives in sessions/api/urls.py)."""

from django.urls import include, path

from sessions import views

urlpatterns = [
    path("talk/", views.talk, name="talk"),
    path("calls/", views.call_history, name="call_history"),
    path("calls/<str:public_id>/", views.call_detail, name="call_detail"),
    path("staff/calls/<str:public_id>/", views.staff_call_detail, name="staff_call_detail"),
    path("staff/reconciliation/", include("sessions.reconciliation.urls")),
    path("staff/live-calls/", include("sessions.supervisor.urls")),
]
