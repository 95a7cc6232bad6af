import json

import pytest
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from notifications.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint

from .factories import WebhookEndpointFactory


@pytest.fixture
def admin_client_(client, staff):
    client.force_login(staff)
    return client


def failed_delivery(endpoint):
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_key="entry:1",
        event_type="points.earned",
        body='{"type":"points.earned","timestamp":"2026-01-01T00:00:00Z","data":{}}',
        status=WebhookDelivery.Status.FAILED,
        attempts=8,
        last_status_code=500,
        last_error="HTTP 500",
        created_at=now,
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=8, at=now, status_code=500, error="HTTP 500")
    return delivery


def test_the_webhook_admin_pages_open(admin_client_, endpoint):
    delivery = failed_delivery(endpoint)
    pages = [
        reverse("admin:notifications_webhookendpoint_changelist"),
        reverse("admin:notifications_webhookendpoint_add"),
        reverse("admin:notifications_webhookendpoint_change", args=[endpoint.pk]),
        reverse("admin:notifications_webhookdelivery_changelist"),
        reverse("admin:notifications_webhookdelivery_changelist") + "?status__exact=failed",
        reverse("admin:notifications_webhookdelivery_changelist") + "?event_type=points.earned",
        reverse("admin:notifications_webhookdelivery_changelist") + f"?endpoint__id__exact={endpoint.pk}",
        reverse("admin:notifications_webhookdelivery_change", args=[delivery.pk]),
    ]
    for url in pages:
        assert admin_client_.get(url).status_code == 200, url


def test_the_endpoint_page_shows_the_secret_and_the_buttons(admin_client_, endpoint):
    page = admin_client_.get(reverse("admin:notifications_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret in page
    assert "Send test event" in page
    assert "Rotate secret" in page
    assert 'type="checkbox" name="events" value="points.earned"' in page


def test_adding_an_endpoint_with_events_as_check_boxes(admin_client_, program, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    response = admin_client_.post(
        reverse("admin:notifications_webhookendpoint_add"),
        {
            "program": program.pk,
            "url": "https://93.184.215.14/hooks",
            "description": "Shop",
            "events": ["points.earned", "tier.changed"],
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["points.earned", "tier.changed"]
    assert endpoint.secret.startswith("whsec_")


@pytest.mark.parametrize(
    "url", ["http://93.184.215.14/hooks", "https://127.0.0.1/hooks", "https://10.0.0.8/x", "https://localhost/x"]
)
def test_the_endpoint_form_refuses_private_or_plain_http_urls(admin_client_, program, settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    response = admin_client_.post(
        reverse("admin:notifications_webhookendpoint_add"),
        {"program": program.pk, "url": url, "events": ["points.earned"], "is_active": "on"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"]
    assert not WebhookEndpoint.objects.exists()


def test_the_send_test_event_button_delivers_a_signed_test_event(admin_client_, endpoint, receiver):
    url = reverse("admin:notifications_webhookendpoint_send_test", args=[endpoint.pk])
    assert admin_client_.get(url).status_code == 403
    response = admin_client_.post(url, follow=True)
    delivery = WebhookDelivery.objects.get(event_type="webhook.test")
    assert response.redirect_chain[-1][0] == reverse("admin:notifications_webhookdelivery_change", args=[delivery.pk])
    assert "answered HTTP 200" in response.content.decode()
    [request] = receiver.requests
    assert Webhook(endpoint.secret).verify(request["body"], request["headers"])["type"] == "webhook.test"
    assert delivery.attempt_log.get().status_code == 200


def test_the_test_event_action_on_the_endpoint_list(admin_client_, endpoint, receiver):
    response = admin_client_.post(
        reverse("admin:notifications_webhookendpoint_changelist"),
        {"action": "send_test_events", "_selected_action": [endpoint.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert [json.loads(r["body"])["type"] for r in receiver.requests] == ["webhook.test"]


def test_rotating_the_secret(admin_client_, endpoint):
    old = endpoint.secret
    response = admin_client_.post(reverse("admin:notifications_webhookendpoint_rotate_secret", args=[endpoint.pk]))
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.secret.startswith("whsec_")


def test_retry_now_sends_a_failed_delivery_again(admin_client_, endpoint, receiver, django_capture_on_commit_callbacks):
    delivery = failed_delivery(endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            reverse("admin:notifications_webhookdelivery_changelist"),
            {"action": "retry_now", "_selected_action": [delivery.pk]},
            follow=True,
        )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [delivery.message_id]


def test_the_delivery_log_is_read_only(admin_client_, endpoint):
    delivery = failed_delivery(endpoint)
    page = admin_client_.get(reverse("admin:notifications_webhookdelivery_change", args=[delivery.pk])).content
    assert b'name="_save"' not in page
    assert admin_client_.get(reverse("admin:notifications_webhookdelivery_add")).status_code == 403


def test_staff_without_change_permission_cannot_retry_or_send(client, endpoint, db):
    from tests.loyalty.factories import StaffFactory

    viewer = StaffFactory()
    client.force_login(viewer)
    url = reverse("admin:notifications_webhookendpoint_send_test", args=[endpoint.pk])
    assert client.post(url).status_code == 403
    assert not WebhookDelivery.objects.exists()
    assert WebhookEndpointFactory  # factories stay importable for other tests
