"""The portal's "Preferences" and "My data" pages (docs/portal.md). Thin: each parses its form
and calls one service (`services_prefs`) or selector (`selectors_prefs`)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from loyalty import errors
from loyalty.models import DeletionRequest
from notifications import emails, page_words

from . import selectors_prefs, services_prefs
from .access import SESSION_LANGUAGE, Visitor, portal_page
from .forms import PreferencesForm
from .views import _page


def _kind_choices(language: str) -> tuple[list[tuple[str, str]], set[str]]:
    """The optional kinds as (value, label) in `language`, and the marketing ones."""
    kinds = emails.preference_kinds()
    choices = [(info.kind.value, page_words.kind_name(info.kind.value, language)) for info in kinds]
    return choices, {info.kind.value for info in kinds if info.marketing}


@portal_page(login_required=True)
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """Email kinds on or off, consent to offers, language; "unsubscribe from all offers" is a
    separate form (`unsubscribe_marketing`)."""
    member = visitor.member
    assert member is not None  # login_required
    choices, marketing = _kind_choices(visitor.language)
    if request.method == "POST":
        form = PreferencesForm(request.POST, kinds=choices)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services_prefs.preferences_save(
                    member=member, kinds=data["kinds"], email_consent=data["email_consent"], language=data["language"]
                )
            except errors.InvalidInput:
                form.add_error(None, _("Check the form."))
            else:
                request.session[SESSION_LANGUAGE] = data["language"]
                messages.success(request, page_words.words(data["language"])["saved"])
                return redirect("portal:preferences", visitor.program.slug)
    else:
        state = emails.preferences_read(member_id=member.pk)
        form = PreferencesForm(
            kinds=choices,
            initial={
                "kinds": [kind for kind, on in state.items() if on],
                "email_consent": member.email_consent,
                "language": member.language or visitor.language,
            },
        )
    ticked = set(form["kinds"].value() or [])
    rows = [
        {"value": value, "label": label, "checked": value in ticked, "marketing": value in marketing}
        for value, label in choices
    ]
    context = {
        "form": form,
        "w": page_words.words(visitor.language),
        "account_rows": [row for row in rows if not row["marketing"]],
        "offer_rows": [row for row in rows if row["marketing"]],
    }
    return _page(request, visitor, "portal/preferences.html", context, current="preferences")


@portal_page(login_required=True)
@require_POST
def unsubscribe_marketing(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    assert visitor.member is not None
    services_prefs.marketing_unsubscribe(member=visitor.member)
    messages.success(request, page_words.words(visitor.language)["done_all"].format(program=visitor.program.name))
    return redirect("portal:preferences", visitor.program.slug)


@portal_page(login_required=True)
@require_http_methods(["GET"])
def my_data(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """The downloads, and the deletion request (its state when one was made)."""
    assert visitor.member is not None
    waiting = DeletionRequest.objects.filter(member=visitor.member, status=DeletionRequest.Status.OPEN).first()
    return _page(request, visitor, "portal/my_data.html", {"waiting": waiting}, current="my_data")


def _download(content: bytes, *, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _file_name(visitor: Visitor, extension: str) -> str:
    return f"{visitor.program.slug}-my-data-{timezone.localdate().isoformat()}.{extension}"


@portal_page(login_required=True)
@require_http_methods(["GET"])
def my_data_json(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    assert visitor.member is not None
    content = selectors_prefs.member_data_json(member=visitor.member)
    return _download(content, content_type="application/json; charset=utf-8", name=_file_name(visitor, "json"))


@portal_page(login_required=True)
@require_http_methods(["GET"])
def my_data_csv(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    assert visitor.member is not None
    content = selectors_prefs.member_data_zip(member=visitor.member)
    return _download(content, content_type="application/zip", name=_file_name(visitor, "zip"))


@portal_page(login_required=True)
@require_POST
def deletion_request(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    assert visitor.member is not None
    services_prefs.deletion_request(member=visitor.member)
    messages.success(request, _("We have your request. Our team will erase your data and let you know."))
    return redirect("portal:my_data", visitor.program.slug)
