"""Public pages of the notifications app: unsubscribe and email preferences (docs/emails.md).
They work without logging in: the signed token in the link names the member and the kind."""

from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" here, without a page.
    path("unsubscribe/<str:token>/one-click", views.unsubscribe_one_click, name="unsubscribe_one_click"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
]
