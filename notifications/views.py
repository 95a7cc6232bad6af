"""Unsubscribe and preference pages reached from an email's links, without logging in
(docs/emails.md). The token is signed (`emails.unsubscribe_token`): it names one member and the
kind of the email the link came from; nothing else can be read or changed with it."""

from __future__ import annotations

import logging
from typing import Any

from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from loyalty.models import LANGUAGES, Member

from . import email_kinds, emails, page_words
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


def _invalid(request: HttpRequest) -> HttpResponse:
    """A damaged, forged or stale link: a clear page in both languages, 400."""
    return render(
        request,
        "notifications/unsubscribe_invalid.html",
        {"pages": [(code, page_words.words(code)) for code, _name in LANGUAGES]},
        status=400,
    )


def _page(member: Member, **context: Any) -> dict[str, Any]:
    language = emails.language_of(member.program, member)
    return {
        "member": member,
        "program": member.program,
        "language": language,
        "w": page_words.words(language),
        "postal_address": emails.program_settings(member.program_id).postal_address,
        **context,
    }


@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a page with a button (mail scanners follow GET links; only the button unsubscribes).
    POST: unsubscribe from the link's kind, or (`scope=all`, offered on a marketing email's
    link) from every marketing kind."""
    found = _member_and_kind(token)
    if found is None:
        return _invalid(request)
    member, kind = found
    page = _page(member, token=token)
    words = page["w"]
    name = page_words.kind_name(kind, page["language"])
    marketing = email_kinds.KINDS[kind].marketing
    done = ""
    if request.method == "POST":
        everything = marketing and request.POST.get("scope") == "all"
        emails.opt_out(
            member_id=member.pk, kind=EmailOptOut.ALL_MARKETING if everything else kind, via="unsubscribe link"
        )
        done = (words["done_all"] if everything else words["done"]).format(kind=name, program=member.program.name)
    stopping = [kind, EmailOptOut.ALL_MARKETING] if marketing else [kind]
    already = not done and EmailOptOut.objects.filter(member=member, kind__in=stopping).exists()
    return render(
        request,
        "notifications/unsubscribe.html",
        {
            **page,
            "done": done,
            "already": words["already"].format(kind=name) if already else "",
            "question": words["unsubscribe_question"].format(kind=name, program=member.program.name),
            "address": words["unsubscribe_address"].format(email=member.email),
            "offer_all": marketing,
        },
    )


@csrf_exempt  # RFC 8058: the mail provider POSTs without a session or a CSRF token; the signed token is the proof
@require_http_methods(["GET", "POST"])
def unsubscribe_one_click(request: HttpRequest, token: str) -> HttpResponse:
    """RFC 8058 one-click: a POST unsubscribes at once (idempotent). A GET (a person or a link
    checker opening the header's URL) only shows the confirmation page."""
    if request.method == "GET":
        return redirect("notifications:unsubscribe", token=token)
    found = _member_and_kind(token)
    if found is None:
        return HttpResponseBadRequest("Unknown or damaged unsubscribe link.", content_type="text/plain")
    member, kind = found
    emails.opt_out(member_id=member.pk, kind=kind, via="one-click")
    return HttpResponse("Unsubscribed.", content_type="text/plain")


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """Every kind the member may switch off, with its state, in two groups (account emails,
    offers); POST saves the ticks (`emails.opt_out` / `opt_in`)."""
    found = _member_and_kind(token)
    if found is None:
        return _invalid(request)
    member, _kind = found
    page = _page(member, token=token)
    optional = emails.preference_kinds()
    saved = False
    if request.method == "POST":
        emails.preferences_save(member_id=member.pk, wanted=request.POST.getlist("kinds"), via="preferences")
        saved = True
    state = emails.preferences_read(member_id=member.pk)

    def row(info: email_kinds.KindInfo) -> dict[str, Any]:
        return {
            "kind": info.kind.value,
            "label": page_words.kind_name(info.kind.value, page["language"]),
            "on": state[info.kind.value],
        }

    return render(
        request,
        "notifications/preferences.html",
        {
            **page,
            "account_rows": [row(info) for info in optional if not info.marketing],
            "offer_rows": [row(info) for info in optional if info.marketing],
            "intro": page["w"]["preferences_intro"].format(program=member.program.name, email=member.email),
            "saved": saved,
        },
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
