"""Unsubscribe and preference pages reached from an email's links, without logging in
(docs/emails.md). The token is signed (`emails.unsubscribe_token`): it names one member and the
kind of the email the link came from; nothing else can be read or changed with it."""

from __future__ import annotations

import logging

from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from loyalty.models import Member

from . import email_kinds, emails
from .models import EmailOptOut

logger = logging.getLogger(__name__)


def _member_and_kind(token: str) -> tuple[Member, str] | None:
    read = emails.unsubscribe_read(token)
    if read is None:
        return None
    member_id, kind = read
    member = Member.objects.select_related("program").filter(pk=member_id).first()
    if member is None or kind not in email_kinds.KINDS:
        return None
    return member, kind


def _opt_out_kind(kind: str) -> str:
    """What an unsubscribe link of `kind` stops: that kind (a marketing kind also stops the
    member's marketing consent being used for it)."""
    return kind


@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a page with one button (mail scanners follow GET links; only the button unsubscribes).
    POST: unsubscribe from the link's kind."""
    found = _member_and_kind(token)
    if found is None:
        return render(request, "notifications/unsubscribe_invalid.html", status=400)
    member, kind = found
    done = False
    already = EmailOptOut.objects.filter(member=member, kind=_opt_out_kind(kind)).exists()
    if request.method == "POST":
        emails.opt_out(member_id=member.pk, kind=_opt_out_kind(kind), via="unsubscribe link")
        done = True
    return render(
        request,
        "notifications/unsubscribe.html",
        {
            "member": member,
            "program": member.program,
            "kind_label": email_kinds.EmailKind(kind).label,
            "done": done,
            "already": already and not done,
            "token": token,
        },
    )


@csrf_exempt  # RFC 8058: the mail provider POSTs without a session or a CSRF token; the signed token is the proof
@require_POST
def unsubscribe_one_click(request: HttpRequest, token: str) -> HttpResponse:
    found = _member_and_kind(token)
    if found is None:
        return HttpResponseBadRequest("Unknown or damaged unsubscribe link.")
    member, kind = found
    emails.opt_out(member_id=member.pk, kind=_opt_out_kind(kind), via="one-click")
    return HttpResponse("Unsubscribed.", content_type="text/plain")


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """Every kind the member may switch off, with its state; POST saves the ticks."""
    found = _member_and_kind(token)
    if found is None:
        return render(request, "notifications/unsubscribe_invalid.html", status=400)
    member, _kind = found
    optional = [
        info for info in email_kinds.KINDS.values() if info.to == "member" and info.kind not in email_kinds.ALWAYS_ON
    ]
    saved = False
    if request.method == "POST":
        wanted = set(request.POST.getlist("kinds"))
        for info in optional:
            if info.kind.value in wanted:
                emails.opt_in(member_id=member.pk, kind=info.kind.value)
            else:
                emails.opt_out(member_id=member.pk, kind=info.kind.value, via="preferences")
        saved = True
    opted = set(EmailOptOut.objects.filter(member=member).values_list("kind", flat=True))
    rows = [
        {"kind": info.kind.value, "label": info.kind.label, "on": info.kind.value not in opted} for info in optional
    ]
    return render(
        request,
        "notifications/preferences.html",
        {"member": member, "program": member.program, "rows": rows, "saved": saved, "token": token},
    )


_mailgun_tracking_view = MailgunTrackingWebhookView.as_view()


@csrf_exempt  # the ESP posts without a session; anymail checks Mailgun's HMAC signature instead
def mailgun_tracking(request: HttpRequest) -> HttpResponse:
    """Mailgun's tracking webhook through anymail (signature checked there, then
    `anymail.signals.tracking`, handled by `email_receivers.on_esp_tracking`). Without a signing
    key configured, 503 (Mailgun retries later) and an error in the log, never an unchecked event."""
    try:
        return _mailgun_tracking_view(request)
    except ImproperlyConfigured as error:
        logger.error("Mailgun tracking webhook called but not configured: %s", error)
        return HttpResponse("Mailgun tracking is not configured.", status=503, content_type="text/plain")
