"""Admin of the outgoing webhooks: endpoints (events as check boxes, the signing secret shown
read-only with a "Rotate secret" button, a "Send test event" button) and the read-only
delivery log with its attempts and a "Retry now" action. Writes go through services."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from loyalty.admin import LargeTableAdmin, ProgramScopedAdmin, ReadOnlyAdmin, ReadOnlyInline

from . import services
from .forms import WebhookEndpointForm
from .models import TEST_EVENT, DeliveryAttempt, EventType, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ProgramScopedAdmin):
    form = WebhookEndpointForm
    change_form_template = "admin/notifications/webhookendpoint/change_form.html"
    list_display = ("__str__", "url", "program", "event_list", "is_active", "created_at", "log_link")
    list_filter = ("is_active", "program")
    list_select_related = ("program",)
    search_fields = ("url", "description")
    autocomplete_fields = ("program",)
    actions = ["send_test_events", "rotate_secrets"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["program", "url", "description", "events", "is_active"]
        return [*fields, "secret", "created_at"] if obj else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The program of an endpoint is fixed: its deliveries and secret belong to it.
        return ["program", "secret", "created_at"] if obj else []

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events) or "-"

    @admin.display(description="deliveries")
    def log_link(self, obj: WebhookEndpoint) -> str:
        url = reverse("admin:notifications_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">log</a>', url)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = {k: form.cleaned_data[k] for k in ("url", "description", "events", "is_active")}
        # The form ran the same URL rules; the services run them again (and own the write).
        if change:
            saved = services.endpoint_update(endpoint=WebhookEndpoint.objects.get(pk=obj.pk), **data)
        else:
            saved = services.endpoint_create(program=form.cleaned_data["program"], **data)
        obj.pk, obj.secret, obj.created_at, obj.events = saved.pk, saved.secret, saved.created_at, saved.events
        if not change:
            self.message_user(
                request,
                "Give the receiver this endpoint's signing secret (shown on its page, with a button to rotate it).",
                messages.INFO,
            )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="notifications_webhookendpoint_send_test",
            ),
            path(
                "<int:pk>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="notifications_webhookendpoint_rotate_secret",
            ),
            *super().get_urls(),
        ]

    def _send_test(self, endpoint: WebhookEndpoint) -> WebhookDelivery:
        """Write the test delivery and try it at once, in the request, so that staff see the
        answer (the queued task then finds it done). A failure is retried like any delivery."""
        delivery = services.endpoint_send_test(endpoint=endpoint)
        services.delivery_attempt(delivery_id=delivery.pk)
        return delivery

    def _report_test(self, request: HttpRequest, delivery: WebhookDelivery) -> None:
        delivery.refresh_from_db()
        if delivery.status == WebhookDelivery.Status.SUCCEEDED:
            text, level = f"answered HTTP {delivery.last_status_code}", messages.SUCCESS
        elif delivery.attempts:
            text, level = f"failed: {delivery.last_error or delivery.last_status_code}", messages.WARNING
        else:
            text, level = "queued", messages.INFO
        self.message_user(request, f"Test event {delivery.message_id} to {delivery.endpoint.url} {text}.", level)

    def send_test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(self.get_queryset(request).select_related("program"), pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        delivery = self._send_test(endpoint)
        self._report_test(request, delivery)
        return HttpResponseRedirect(reverse("admin:notifications_webhookdelivery_change", args=[delivery.pk]))

    def rotate_secret_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(self.get_queryset(request), pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        services.endpoint_rotate_secret(endpoint=endpoint)
        self.message_user(request, "New signing secret: give it to the receiver.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:notifications_webhookendpoint_change", args=[pk]))

    @admin.action(description="Send a test event to the selected endpoints", permissions=["change"])
    def send_test_events(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset.select_related("program")[:10]:
            self._report_test(request, self._send_test(endpoint))

    @admin.action(description="Rotate the signing secret of the selected endpoints", permissions=["change"])
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        done = 0
        for endpoint in queryset[:100]:
            services.endpoint_rotate_secret(endpoint=endpoint)
            done += 1
        self.message_user(request, f"{done} secret(s) rotated.", messages.SUCCESS)


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("number", "at", "status_code", "error", "duration_ms", "response_body")
    readonly_fields = fields
    ordering = ("number",)
    show_change_link = False


class EventTypeFilter(admin.SimpleListFilter):
    """Static choices: a field filter would read the distinct types of the whole table."""

    title = "event"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*EventType.choices, (TEST_EVENT, "Test event")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    """The delivery log: read-only; "Retry now" queues failed deliveries again."""

    program_path = "endpoint__program"

    list_display = (
        "message_id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", EventTypeFilter, "endpoint")
    list_select_related = ("endpoint",)
    search_fields = ("=message_id",)
    readonly_fields = (
        "endpoint",
        "message_id",
        "event_type",
        "event_key",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "pretty_body",
    )
    exclude = ("body",)
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]

    @admin.display(description="body")
    def pretty_body(self, obj: WebhookDelivery) -> str:
        try:
            text = json.dumps(json.loads(obj.body), indent=2)
        except ValueError:
            text = obj.body
        return format_html("<pre>{}</pre>", text)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.change_webhookendpoint")

    @admin.action(description="Retry the selected failed deliveries now (same webhook-id)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        ids = list(queryset.filter(status=WebhookDelivery.Status.FAILED).values_list("pk", flat=True)[:500])
        queued = services.deliveries_retry(delivery_ids=ids)
        self.message_user(request, f"{queued} deliver{'y' if queued == 1 else 'ies'} queued again.", messages.SUCCESS)


# The member emails' pages (settings, overview, template editor) and the outbox with suppressions.
from . import admin_emails, admin_outbox  # noqa: E402, F401
