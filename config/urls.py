from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from cards import api as cards_api
from loyalty.api import points as api_points
from notifications import views as notifications_views
from rewards import api as rewards_api
from tiers import api as tiers_api
from workflows import api as workflows_api


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# REST API version 1 (docs/api.md): each app's api.py exports its `urlpatterns`.
api_v1 = [
    *api_points.urlpatterns,
    *cards_api.urlpatterns,
    *workflows_api.urlpatterns,
    *tiers_api.urlpatterns,
    *rewards_api.urlpatterns,
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("health", health, name="health"),
    # The dashboard and reports sit inside the admin's URL space, before the admin's own patterns.
    path("admin/dashboard/", include("dashboard.urls")),
    path("admin/program-files/", include("programfiles.urls")),
    path("admin/", admin.site.urls),
    path("cards/", include("cards.urls")),
    path("e/", include("notifications.urls")),
    # The ESP's delivery events (bounces, complaints...): the URL to paste in Mailgun (docs/emails.md).
    path("anymail/mailgun/tracking/", notifications_views.mailgun_tracking, name="mailgun_tracking_webhook"),
    path("p/", include("portal.urls")),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its start-up script served as a file (`?script`), not inline: the API docs'
    # Content-Security-Policy allows scripts from this site only (config/security.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

# Uploaded files (reward images) in development; production serves MEDIA_ROOT from the web
# server or object storage (`static()` adds nothing when DEBUG is off).
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

# Unreadable requests, unknown paths and crashes under /api/ answer with the API's JSON error envelope.
handler400 = "loyalty.api.errors.bad_request"
handler404 = "loyalty.api.errors.page_not_found"
handler500 = "loyalty.api.errors.server_error"
# A staff page refused: the admin's own 403 (loyalty/admin/errors.py); Django's page elsewhere.
handler403 = "loyalty.admin.errors.permission_denied"
