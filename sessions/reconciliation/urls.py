from django.urls import path

from sessions.reconciliation import views

urlpatterns = [
    path("", views.dashboard, name="reconciliation_dashboard"),
]
