"""Admin of the email outbox (docs/emails.md): the messages, with filters by status, kind,
program and date, an indexed search by member (email or id) or message id, no full counts
(`LargeTableAdmin`), a read-only page with the message rendered as it would be sent now, and a
"Resend" action (`emails.messages_resend`); the suppressed addresses (added and lifted through
`emails.suppression_add` / `suppression_remove`); and a member's latest messages on the
member's page (an inline added to loyalty's member admin, which imports nothing of ours)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from loyalty import staff_scope
from loyalty.admin import LargeTableAdmin, ProgramScopedAdmin, ReadOnlyAdmin, ReadOnlyInline
from loyalty.admin.base import _as_int_id, _program_ids
from loyalty.admin.members import MEMBER_PAGE_LINKS, MemberAdmin
from loyalty.models import Member

from . import emails
from .models import EmailMessage, EmailSuppression

RESEND_LIMIT = 500
MEMBER_PAGE_MESSAGES = 10


def _outbox_of(member_id: int | str) -> str:
    return f"{reverse('admin:notifications_emailmessage_changelist')}?member__id__exact={member_id}"


@admin.register(EmailMessage)
class EmailMessageAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "created_at", "kind", "member_link", "to_email", "status", "program")
    # Status and kind filter on their choices, program on a handful of rows, dates on the
    # (program, -created_at) index: none reads the table to build its choices.
    list_filter = ("status", "kind", "program", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("program", "member")
    ordering = ("-id",)
    search_fields = ("=to_email",)  # replaced by get_search_results (indexed look-ups only)
    search_help_text = "A member's email or member id, or #message id (exact)."
    actions = ("resend",)
    fields = (
        "program",
        "member_link",
        "kind",
        "source",
        "status",
        "status_at",
        "to_email",
        "subject",
        "language",
        "attempts",
        "next_attempt_at",
        "created_at",
        "sent_at",
        "esp_message_id",
        "last_error",
        "pretty_data",
        "preview",
    )
    readonly_fields = fields

    @admin.display(description="member")
    def member_link(self, obj: EmailMessage) -> str:
        if obj.member_id is None:
            return "(staff copy)"
        url = reverse("admin:loyalty_member_change", args=[obj.member_id])
        return format_html('<a href="{}">{}</a>', url, obj.member)

    @admin.display(description="data")
    def pretty_data(self, obj: EmailMessage) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description="message (rendered now)")
    def preview(self, obj: EmailMessage) -> str:
        """The message as it would be sent now (template, member and program as they are)."""
        kind_to_member = obj.member if obj.member_id is not None else None
        try:
            rendered = emails.message_render(program=obj.program, member=kind_to_member, kind=obj.kind, data=obj.data)
        except Exception as error:  # a preview never breaks the page
            return format_html('<p class="errornote">The message cannot be rendered: {}</p>', error)
        return format_html(
            '<p><strong>Subject:</strong> {}</p><iframe sandbox="" srcdoc="{}" title="HTML part" '
            'style="width:100%;max-width:720px;height:640px;border:1px solid #ccc;background:#fff"></iframe>'
            "<details><summary>Text part</summary><pre>{}</pre></details>",
            rendered.subject,
            rendered.html,
            rendered.text,
        )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Exact, indexed look-ups: an address (the member's, or the one it was sent to), a member
        id (index email_message_member) or #message id."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("#"):
            message_id = _as_int_id(term[1:])
            return (queryset.filter(pk=message_id) if message_id is not None else queryset.none()), False
        if "@" in term and " " not in term:
            address = term.lower()
            members = Member.objects.filter(program_id__in=_program_ids(), email=address).values("pk")
            return queryset.filter(Q(member_id__in=members) | Q(member__isnull=True, to_email=address)), False
        member_id = _as_int_id(term)
        if member_id is not None:
            return queryset.filter(member_id=member_id), False
        return queryset.none(), False

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.change_emailmessage")

    @admin.action(description="Resend the selected messages now", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[EmailMessage]) -> None:
        ids = list(queryset.values_list("pk", flat=True)[: RESEND_LIMIT + 1])
        if len(ids) > RESEND_LIMIT:
            self.message_user(request, f"Select at most {RESEND_LIMIT} messages to resend.", messages.ERROR)
            return
        count = emails.messages_resend(message_ids=ids)
        self.message_user(
            request, f"{count} message{'' if count == 1 else 's'} queued to be sent again.", messages.SUCCESS
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "member/<int:member_id>/",
                self.admin_site.admin_view(self.member_messages_view),
                name="notifications_emailmessage_member",
            ),
            *super().get_urls(),
        ]

    def member_messages_view(self, request: HttpRequest, member_id: int) -> HttpResponse:
        """The member page's "Emails" link: the outbox filtered to that member."""
        return HttpResponseRedirect(_outbox_of(member_id))


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    """Addresses no program writes to: added by the ESP's bounces and complaints, or by staff;
    deleting a row lets mail go to the address again."""

    list_display = ("email", "reason", "detail", "created_at")
    list_filter = ("reason",)
    search_fields = ("=email",)
    search_help_text = "An exact email address."
    fields = ("email", "reason", "detail", "created_at")
    ordering = ("-id",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailSuppression]:
        """The list is the installation's (an address is suppressed for every program); a user
        limited to some programs sees the addresses of their programs' members only."""
        queryset = super().get_queryset(request)
        ids = staff_scope.program_ids_for(request.user)
        if ids is None:
            return queryset
        return queryset.filter(Exists(Member.objects.filter(program_id__in=ids, email=OuterRef("email"))))

    def get_readonly_fields(self, request: HttpRequest, obj: EmailSuppression | None = None) -> tuple[str, ...]:
        return self.fields if obj is not None else ("created_at",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a suppression is added or lifted, never edited

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"reason": EmailSuppression.Reason.STAFF}

    def save_model(self, request: HttpRequest, obj: EmailSuppression, form: Any, change: bool) -> None:
        created = emails.suppression_add(
            email=form.cleaned_data["email"], reason=form.cleaned_data["reason"], detail=form.cleaned_data["detail"]
        )
        saved = EmailSuppression.objects.get(email=form.cleaned_data["email"].strip().lower())
        obj.pk, obj.email, obj.created_at = saved.pk, saved.email, saved.created_at
        if not created:
            self.message_user(request, f"{saved.email} was already suppressed.", messages.WARNING)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip().lower()
        return (queryset.filter(email=term) if term else queryset), False

    def delete_model(self, request: HttpRequest, obj: EmailSuppression) -> None:
        emails.suppression_remove(emails=[obj.email])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EmailSuppression]) -> None:
        emails.suppression_remove(emails=list(queryset.values_list("email", flat=True)))


class LatestFormSet(BaseInlineFormSet):
    """Only the member's latest messages (a member may have thousands): index email_message_member."""

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset().order_by("-id")[:MEMBER_PAGE_MESSAGES]
        return self._latest


class MemberEmailsInline(ReadOnlyInline):
    model = EmailMessage
    formset = LatestFormSet
    fk_name = "member"
    verbose_name = "email"
    verbose_name_plural = f"Latest emails (at most {MEMBER_PAGE_MESSAGES}; the link “Emails” lists them all)"
    fields = ("message", "created_at", "kind", "status", "to_email", "subject")
    readonly_fields = fields
    show_change_link = False

    @admin.display(description="message")
    def message(self, obj: EmailMessage) -> str:
        url = reverse("admin:notifications_emailmessage_change", args=[obj.pk])
        return format_html('<a href="{}">#{}</a>', url, obj.pk)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Shown, never submitted: on a POST of the member form the inline is left out, so saving
        # a member needs no formset data from it (and clients that post only the member's own
        # fields keep working).
        return request.method in ("GET", "HEAD") and request.user.has_perm("notifications.view_emailmessage")


# loyalty's member admin imports no higher app: the inline and the link are added from here.
MemberAdmin.inlines = (*MemberAdmin.inlines, MemberEmailsInline)
MEMBER_PAGE_LINKS.append(("Emails", "admin:notifications_emailmessage_member", "notifications.view_emailmessage"))
