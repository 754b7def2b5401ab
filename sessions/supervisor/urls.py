from django.urls import path

from sessions.supervisor import views

urlpatterns = [
    path("", views.live_calls, name="live_calls"),
    path("<str:public_id>/hangup/", views.hang_up, name="live_call_hangup"),
]
