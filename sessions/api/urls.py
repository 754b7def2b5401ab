from django.urls import path

from sessions.api import views

app_name = "realtime-api"

urlpatterns = [
    path("assistants/", views.AssistantListView.as_view(), name="assistant-list"),
    path("calls/", views.CallListView.as_view(), name="call-list"),
    path("calls/<str:call_id>", views.CallDetailView.as_view(), name="call-detail"),
    path("calls/<str:call_id>/hangup", views.CallHangupView.as_view(), name="call-hangup"),
    path("calls/<str:call_id>/attach", views.CallAttachView.as_view(), name="call-attach"),
    path("client-secrets/", views.ClientSecretView.as_view(), name="client-secret-create"),
]
