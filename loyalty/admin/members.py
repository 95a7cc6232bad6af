"""The members' admin: an indexed search (`member_search`: id, external id, part of an email
or a name through trigram indexes, card numbers through the cards' search), the profile edited
through `services.member_update`, enrolment through the service, block/unblock actions, and a
change page with the latest ledger entries, links to the posting pages (`postings`) and the
links higher apps add (`MEMBER_PAGE_LINKS`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .. import services
from ..forms import MemberAdminForm
from ..models import Member
from ..selectors import member_ledger
from .audit import MEMBER_PAGE_URL, member_page_link
from .base import LargeTableAdmin, _as_int_id, _program_ids
from .postings import MemberPostingPages, can_adjust_points, can_transfer_points
from .scope import ProgramScopedAdmin
from .timezones import ProgramTimeZoneAdmin

RECENT_ENTRIES = 25

# Searches that higher apps add to the member search: each takes the search term and returns the
# ids of the members it finds (a short list, from an index), or None. E.g. cards adds "members
# whose card number starts with these digits".
MEMBER_SEARCHES: list[Callable[[str], list[int] | None]] = []

# The shortest part of a name or email searched anywhere in the text (a trigram index needs 3
# characters); shorter terms match the beginning of a first or last name.
MIN_CONTAINS = 3

# Links that higher apps add to a member's admin page (loyalty imports none of them): each is
# (label, URL name taking the member's id, permission or ""). E.g. rewards adds "Redeem a reward".
MEMBER_PAGE_LINKS: list[tuple[str, str, str]] = []


@admin.register(Member)
class MemberAdmin(ProgramScopedAdmin, MemberPostingPages, ProgramTimeZoneAdmin, LargeTableAdmin):
    form = MemberAdminForm
    list_display = ("id", "name", "email", "external_id", "program", "status", "available", "pending")
    list_display_links = ("id",)
    list_filter = ("status", "program", "enrollment_channel")
    list_select_related = ("program",)
    ordering = ("-id",)
    search_fields = ("=external_id", "email", "first_name", "last_name")  # get_search_results: member_search
    search_help_text = (
        "Part of a name or an email, a member id (#123), an external id, or a card number (or its first digits)."
    )
    autocomplete_fields = ("program", "referred_by", "user")
    actions = ("block", "unblock")

    # Columns an admin save may write (never the balances: those belong to the ledger).
    PROFILE_FIELDS = (
        "external_id",
        "email",
        "first_name",
        "last_name",
        "birthday",
        "email_consent",
        "referred_by",
        "user",
    )
    BALANCE_FIELDS = ("available", "pending", "lifetime_earned", "redeemed", "expired")

    add_fieldsets = (
        (None, {"fields": ("program", "external_id", "email", "first_name", "last_name", "birthday")}),
        ("Enrolment", {"fields": ("email_consent", "referred_by")}),
    )
    change_fieldsets = (
        (None, {"fields": ("program", "status", "external_id", "email", "first_name", "last_name", "birthday")}),
        (
            "Enrolment",
            {
                "fields": (
                    "enrollment_channel",
                    "enrolled_at",
                    "referral_code",
                    "referred_by",
                    "email_consent",
                    "user",
                    "anonymised_at",
                )
            },
        ),
        (
            "Balances",
            {"fields": BALANCE_FIELDS, "description": "Balances change only through the ledger: use Adjust points."},
        ),
        ("Recent history", {"fields": ("recent_entries",)}),
    )

    @admin.display(description="name (member page)")
    def name(self, obj: Member) -> str:
        """The member's whole story: the dashboard's member page (reversed by name)."""
        return member_page_link(obj.pk, f"{obj.first_name} {obj.last_name}".strip() or "—")

    def get_fieldsets(self, request: HttpRequest, obj: Member | None = None) -> Any:
        return self.change_fieldsets if obj else self.add_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Member | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # The status changes through the block/unblock actions (a service with a signal);
        # moving a member to another program would tear its ledger apart.
        return (
            "program",
            "status",
            "enrollment_channel",
            "enrolled_at",
            "referral_code",
            "anonymised_at",
            *self.BALANCE_FIELDS,
            "recent_entries",
        )

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # The member is the points account: its ledger is protected and append-only.
        return False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Indexed look-ups only (`member_search`): ids, part of an email or a name, a card number."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(member_search(term)), False

    def autocomplete_label(self, obj: Member) -> str:
        """What a member looks like in an autocomplete list (config/admin_site.py)."""
        email = f" <{obj.email}>" if obj.email and obj.email != str(obj) else ""
        return f"{obj}{email} · #{obj.pk}"

    def save_model(self, request: HttpRequest, obj: Member, form: MemberAdminForm, change: bool) -> None:
        if change:
            # Only the changed profile columns: a full save would write back balances read
            # before the form was shown, undoing postings made meanwhile.
            fields = [name for name in form.changed_data if name in self.PROFILE_FIELDS]
            if fields:
                services.member_update(member=obj, **{name: getattr(obj, name) for name in fields})
            return
        member, created = services.member_enrol(
            program=obj.program,
            external_id=obj.external_id,
            email=obj.email,
            first_name=obj.first_name,
            last_name=obj.last_name,
            birthday=obj.birthday,
            channel=Member.Channel.ADMIN,
            email_consent=obj.email_consent,
            referred_by=obj.referred_by,
        )
        for field in Member._meta.concrete_fields:
            setattr(obj, field.attname, getattr(member, field.attname))
        obj._state.adding = False
        if not created:
            self.message_user(request, f"{member} was already enrolled with this external id.", messages.WARNING)

    # -- the change page: recent history, links to the ledger and the posting pages ------------

    @admin.display(description="Latest entries")
    def recent_entries(self, obj: Member) -> str:
        entries = list(member_ledger(member=obj)[:RECENT_ENTRIES])
        if not entries:
            return "No ledger entries yet."
        header = format_html_join(
            "",
            "<th>{}</th>",
            (
                (h,)
                for h in (
                    "Entry",
                    "Created",
                    "Kind",
                    "Points",
                    "Remaining",
                    "Available at",
                    "Expires at",
                    "Reason",
                    "Reference",
                    "By",
                )
            ),
        )
        rows = format_html_join(
            "",
            (
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"
            ),
            (
                (
                    reverse("admin:loyalty_ledgerentry_change", args=[e.pk]),
                    e.pk,
                    _when(e.created_at),
                    e.get_kind_display(),
                    f"{e.points:+d}",
                    e.remaining,
                    _when(e.available_at),
                    _when(e.expires_at),
                    e.reason,
                    e.reference,
                    e.created_by or "",
                )
                for e in entries
            ),
        )
        more = format_html('<p><a href="{}">Full ledger of this member</a></p>', _ledger_url(obj))
        return format_html(
            '<table class="recent-entries"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>{}', header, rows, more
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not unquote(object_id).isdigit():  # not a member id: Django's "doesn't exist" answer, no links
            return super().change_view(request, object_id, form_url, extra_context)
        extra_context = {
            **(extra_context or {}),
            "can_adjust_points": can_adjust_points(request.user),
            "can_transfer_points": can_transfer_points(request.user),
            "member_page_url": reverse(MEMBER_PAGE_URL, args=[unquote(object_id)]),
            "ledger_url": f"{reverse('admin:loyalty_ledgerentry_changelist')}?member__id__exact={unquote(object_id)}",
            "member_links": [
                (label, reverse(url_name, args=[unquote(object_id)]))
                for label, url_name, permission in MEMBER_PAGE_LINKS
                if not permission or request.user.has_perm(permission)
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # -- actions -----------------------------------------------------------------------------

    def _set_status(self, request: HttpRequest, queryset: QuerySet, status: str, verb: str) -> None:
        changed = 0
        for member in queryset.exclude(status=status).select_related("program").iterator(chunk_size=500):
            services.member_set_status(member=member, status=status, actor=request.user)
            self.log_change(request, member, [{"changed": {"fields": ["status"]}}])
            changed += 1
        self.message_user(request, f"{verb} {changed} member{'s' if changed != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Block selected members", permissions=["change"])
    def block(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_status(request, queryset, Member.Status.BLOCKED, "Blocked")

    @admin.action(description="Unblock selected members", permissions=["change"])
    def unblock(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_status(request, queryset, Member.Status.ACTIVE, "Unblocked")


def member_search(term: str) -> Q:
    """The members a staff search term finds, as one condition every part of which an index
    serves (docs/back-office.md, "Finding your way"):

    - `#123`: the member id 123;
    - one word of digits: that member id, that external id, or a card number starting with it;
    - any other word: an external id, or part of the email, the first or the last name
      (`icontains`, served by the trigram indexes of migration 0017); several words must each
      match (e.g. "marie dup").
    """
    term = term.strip()
    if term.startswith("#") and _as_int_id(term[1:]) is not None:
        return Q(pk=_as_int_id(term[1:]))
    compact = "".join(term.split()).replace("-", "")
    words = [compact] if compact.isdigit() else term.split()  # a card number typed in groups
    if len(words) == 1:
        term = words[0]
        match = Q(program_id__in=_program_ids(), external_id=term)
        member_id = _as_int_id(term)
        if member_id is not None:
            match |= Q(pk=member_id)
        for search in MEMBER_SEARCHES:
            found = search(term)
            if found:
                match |= Q(pk__in=found)
        if member_id is not None:
            return match
        return match | _text_match(term)
    match = Q()
    for word in words:
        match &= _text_match(word)
    return match


def _text_match(word: str) -> Q:
    if len(word) >= MIN_CONTAINS:
        return Q(email__icontains=word) | Q(first_name__icontains=word) | Q(last_name__icontains=word)
    return Q(first_name__istartswith=word) | Q(last_name__istartswith=word)


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


def _ledger_url(member: Member) -> str:
    return f"{reverse('admin:loyalty_ledgerentry_changelist')}?member__id__exact={member.pk}"
