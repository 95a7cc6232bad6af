"""Staff admin of the loyalty core (STYLE.md rule 12: declarative; ledger models read-only;
every write that touches points goes through `loyalty.services`).

Scale (DESIGN.md): change lists never count a whole table (`show_full_result_count = False`
and a paginator that counts at most `CappedCountPaginator.cap` rows), sort only by the
primary key, and the member search turns an email or id into an exact, indexed look-up.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from . import errors, services
from .forms import IdempotentForm, MemberAdminForm, PointsAdjustForm, PointsTransferForm, ProgramAdminForm
from .models import Activity, Allocation, IdempotencyRecord, LedgerEntry, LedgerJobRun, Member, Program
from .selectors import member_ledger

RECENT_ENTRIES = 25

# Links that higher apps add to a member's admin page (loyalty imports none of them): each is
# (label, URL name taking the member's id, permission or ""). E.g. rewards adds "Redeem a reward".
MEMBER_PAGE_LINKS: list[tuple[str, str, str]] = []


def can_adjust_points(user: Any) -> bool:
    """Manual adjustments need `loyalty.adjust_points` (the owner and manager groups have it)."""
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.adjust_points"))


def can_transfer_points(user: Any) -> bool:
    """Transfers between members need `loyalty.transfer_points` (owner and manager groups)."""
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.transfer_points"))


def _program_ids() -> list[int]:
    """All program ids (a handful). Adding `program_id IN (...)` to a look-up by email,
    external id, order id or key lets PostgreSQL use the (program, ...) indexes."""
    return list(Program.objects.order_by().values_list("id", flat=True))


def _as_int_id(term: str) -> int | None:
    return int(term) if term.isdigit() and int(term) < 2**63 else None


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows: a filtered count on a table of 10^8 rows would take
    minutes. Past the cap the change list shows `cap` results (see pagination.html)."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: no add, change or delete, whatever the user's permissions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LargeTableAdmin(admin.ModelAdmin):
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    # Sorting by anything but the primary key sorts the whole table.
    sortable_by = ("id",)


# --------------------------------------------------------------------------------------------
# Program


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    form = ProgramAdminForm
    list_display = (
        "name",
        "slug",
        "currency",
        "earn_rate",
        "min_redemption",
        "expiry_days",
        "pending_days",
        "timezone",
        "is_active",
    )
    list_filter = ("is_active",)
    search_fields = ("name", "slug")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "created_at")}),
        ("Points", {"fields": ("points_name", "currency", "earn_rate", "min_redemption")}),
        ("Enrolment", {"fields": ("enrol_on_first_purchase",)}),
        (
            "Pending and expiry",
            {
                "fields": ("pending_days", "expiry_days"),
                "description": "Changes apply to points earned from now on; existing lots keep their dates.",
            },
        ),
        ("Tiers", {"fields": ("tier_metric", "tier_window_days")}),
        ("Locale", {"fields": ("timezone",)}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Program | None = None) -> tuple[str, ...]:
        # The slug names the program in API calls and commands: fixed once created.
        return ("slug", "created_at") if obj else ("created_at",)

    def get_prepopulated_fields(self, request: HttpRequest, obj: Program | None = None) -> dict[str, tuple[str]]:
        return {} if obj else {"slug": ("name",)}

    def has_delete_permission(self, request: HttpRequest, obj: Program | None = None) -> bool:
        # A program's members and ledger are protected; deactivate it instead.
        return False

    def save_model(self, request: HttpRequest, obj: Program, form: ProgramAdminForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        fields = {name: value for name, value in form.cleaned_data.items() if name not in ("name", "slug")}
        created = services.program_create(name=obj.name, slug=obj.slug, **fields)
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding = False


# --------------------------------------------------------------------------------------------
# Member


@admin.register(Member)
class MemberAdmin(LargeTableAdmin):
    form = MemberAdminForm
    list_display = ("id", "name", "email", "external_id", "program", "status", "available", "pending")
    list_display_links = ("id", "name")
    list_filter = ("status", "program", "enrollment_channel")
    list_select_related = ("program",)
    ordering = ("-id",)
    search_fields = ("=external_id", "^first_name", "^last_name")
    search_help_text = "An exact email, member id or external id (fast), or the beginning of a first or last name."
    raw_id_fields = ("referred_by", "user")
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
        ("Enrollment", {"fields": ("email_consent", "referred_by")}),
    )
    change_fieldsets = (
        (None, {"fields": ("program", "status", "external_id", "email", "first_name", "last_name", "birthday")}),
        (
            "Enrollment",
            {"fields": ("enrollment_channel", "enrolled_at", "referral_code", "referred_by", "email_consent", "user")},
        ),
        (
            "Balances",
            {"fields": BALANCE_FIELDS, "description": "Balances change only through the ledger: use Adjust points."},
        ),
        ("Recent history", {"fields": ("recent_entries",)}),
    )

    @admin.display(description="name")
    def name(self, obj: Member) -> str:
        return f"{obj.first_name} {obj.last_name}".strip() or "—"

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
            *self.BALANCE_FIELDS,
            "recent_entries",
        )

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # The member is the points account: its ledger is protected and append-only.
        return False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Exact, indexed look-ups for what identifies one member; name prefixes otherwise."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if " " not in term and "@" in term:
            return queryset.filter(program_id__in=_program_ids(), email=term.lower()), False
        if " " not in term and any(c.isdigit() for c in term):
            match = Q(program_id__in=_program_ids(), external_id=term)
            member_id = _as_int_id(term.removeprefix("#"))
            if member_id is not None:
                match |= Q(pk=member_id)
            return queryset.filter(match), False
        return super().get_search_results(request, queryset, term)

    def save_model(self, request: HttpRequest, obj: Member, form: MemberAdminForm, change: bool) -> None:
        if change:
            # Only the changed profile columns: a full save would write back balances read
            # before the form was shown, undoing postings made meanwhile.
            fields = [name for name in form.changed_data if name in self.PROFILE_FIELDS]
            if fields:
                services.member_update(member=obj, **{name: getattr(obj, name) for name in fields})
            return
        member, created = services.member_enroll(
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
        extra_context = {
            **(extra_context or {}),
            "can_adjust_points": can_adjust_points(request.user),
            "can_transfer_points": can_transfer_points(request.user),
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

    # -- custom pages: adjust and transfer points ------------------------------------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/adjust-points/",
                self.admin_site.admin_view(self.adjust_points_view),
                name="{}_{}_adjust_points".format(*info),
            ),
            path(
                "<path:object_id>/transfer-points/",
                self.admin_site.admin_view(self.transfer_points_view),
                name="{}_{}_transfer_points".format(*info),
            ),
            *super().get_urls(),
        ]

    def _member_or_redirect(self, request: HttpRequest, object_id: str) -> Member | HttpResponse:
        member = self.get_object(request, unquote(object_id))
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return member

    def _change_url(self, member: Member) -> str:
        return reverse("admin:loyalty_member_change", args=[member.pk])

    def _render_posting_page(
        self, request: HttpRequest, member: Member, form: IdempotentForm, *, title: str, submit_label: str, intro: str
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "subtitle": str(member),
            "member": member,
            "form": form,
            "submit_label": submit_label,
            "intro": intro,
            "media": self.media + form.media,
            "change_url": self._change_url(member),
        }
        return TemplateResponse(request, "admin/loyalty/member/posting_form.html", context)

    def adjust_points_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        member = self._member_or_redirect(request, object_id)
        if not isinstance(member, Member):
            return member
        if not can_adjust_points(request.user):
            raise PermissionDenied
        program = member.program
        if request.method == "POST":
            form = PointsAdjustForm(request.POST)
            if form.is_valid():
                points, reason = form.cleaned_data["points"], form.cleaned_data["reason"]
                try:
                    result = services.points_adjust(
                        program=program,
                        member_id=member.pk,
                        points=points,
                        reason=reason,
                        actor=request.user,
                        idempotency_key=form.service_key("adjust"),
                    )
                except errors.LoyaltyError as exc:
                    _add_domain_error(form, exc)
                else:
                    if result.replayed:
                        self.message_user(
                            request,
                            "This adjustment was already posted (the form was sent twice); nothing was posted again.",
                            messages.WARNING,
                        )
                    else:
                        self.log_change(request, member, f"Adjusted points by {points:+d}: {reason}")
                        self.message_user(
                            request,
                            (
                                f"Posted {points:+d} {program.points_name} to {member}. New balance: "
                                f"{result.balance.available} available, {result.balance.pending} pending."
                            ),
                            messages.SUCCESS,
                        )
                    return HttpResponseRedirect(self._change_url(member))
        else:
            form = PointsAdjustForm()
        return self._render_posting_page(
            request,
            member,
            form,
            title="Adjust points",
            submit_label="Post adjustment",
            intro="A credit becomes a lot that expires like points earned today; a debit takes available "
            "points first, then pending ones, and may leave a debt that later credits pay.",
        )

    def transfer_points_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        member = self._member_or_redirect(request, object_id)
        if not isinstance(member, Member):
            return member
        if not can_transfer_points(request.user):
            raise PermissionDenied
        program = member.program
        if request.method == "POST":
            form = PointsTransferForm(request.POST, member=member)
            if form.is_valid():
                receiver: Member = form.cleaned_data["to_member"]
                points, reason = form.cleaned_data["points"], form.cleaned_data["reason"]
                try:
                    result = services.points_transfer(
                        program=program,
                        from_member_id=member.pk,
                        to_member_id=receiver.pk,
                        points=points,
                        reason=reason,
                        actor=request.user,
                        idempotency_key=form.service_key("transfer"),
                    )
                except errors.LoyaltyError as exc:
                    _add_domain_error(form, exc, field_map={"to": "to_member"})
                else:
                    if result.replayed:
                        self.message_user(
                            request,
                            "This transfer was already posted (the form was sent twice); nothing was posted again.",
                            messages.WARNING,
                        )
                    else:
                        self.log_change(
                            request, member, f"Transferred {points} points to member {receiver.pk}: {reason}"
                        )
                        self.log_change(
                            request, receiver, f"Received {points} points from member {member.pk}: {reason}"
                        )
                        to_balance = result.other_balances.get(receiver.pk)
                        self.message_user(
                            request,
                            (
                                f"Transferred {points} {program.points_name} from {member} to {receiver}. "
                                f"New balance: {result.balance.available} available"
                                + (f"; {receiver}: {to_balance.available} available." if to_balance else ".")
                            ),
                            messages.SUCCESS,
                        )
                    return HttpResponseRedirect(self._change_url(member))
        else:
            form = PointsTransferForm(member=member)
        return self._render_posting_page(
            request,
            member,
            form,
            title="Transfer points",
            submit_label="Transfer",
            intro=f"Moves available points of {member} ({member.available} available) to another member of "
            f"{program}. The points keep their expiry dates.",
        )


def _add_domain_error(form: IdempotentForm, exc: errors.LoyaltyError, field_map: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: on the field it names, else above the form."""
    field = exc.details.get("field")
    field = (field_map or {}).get(field, field)
    if isinstance(exc, errors.InvalidPoints | errors.InsufficientPoints):
        field = "points"
    message = exc.message
    if isinstance(exc, errors.IdempotencyConflict):
        message = "This form was already sent with other values. Reload the page to post again."
        field = None
    form.add_error(field if field in form.fields else None, message)


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


def _ledger_url(member: Member) -> str:
    return f"{reverse('admin:loyalty_ledgerentry_changelist')}?member__id__exact={member.pk}"


# --------------------------------------------------------------------------------------------
# The ledger: read-only through and through


class _AllocationInline(admin.TabularInline):
    model = Allocation
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ConsumedLotsInline(_AllocationInline):
    """For a debit: the lots it consumed (or, for a debt, the credits that paid it)."""

    fk_name = "debit"
    verbose_name = "lot consumed"
    verbose_name_plural = "Lots this debit consumed"
    fields = readonly_fields = ("lot", "points", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("lot").order_by("id")


class ConsumingDebitsInline(_AllocationInline):
    """For a lot: the debits that consumed it."""

    fk_name = "lot"
    verbose_name = "consuming debit"
    verbose_name_plural = "Debits that consumed this lot"
    fields = readonly_fields = ("debit", "points", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("debit").order_by("id")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin, LargeTableAdmin):
    list_display = (
        "id",
        "created_at",
        "member",
        "kind",
        "points",
        "remaining",
        "available_at",
        "expires_at",
        "reason",
        "reference",
        "created_by",
    )
    list_filter = ("kind", "program")
    list_select_related = ("member", "created_by")
    ordering = ("-id",)
    raw_id_fields = ("member", "activity", "source_entry", "created_by")
    search_fields = ("=member__id",)
    search_help_text = "A member id (exact). Open a member to see their ledger."
    inlines = (ConsumedLotsInline, ConsumingDebitsInline)
    fieldsets = (
        (None, {"fields": ("program", "member", "kind", "points", "remaining")}),
        ("Dates", {"fields": ("occurred_at", "created_at", "available_at", "released_at", "expires_at")}),
        ("Origin", {"fields": ("reason", "reference", "activity", "source_entry", "created_by")}),
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        member_id = _as_int_id(term.removeprefix("#"))
        if member_id is None:
            return queryset.none(), False
        return queryset.filter(member_id=member_id), False  # index entry_member_recent

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "occurred_at", "member", "type", "order_id", "amount", "currency", "channel")
    list_filter = ("type", "channel", "program")
    list_select_related = ("member",)
    ordering = ("-id",)
    raw_id_fields = ("member",)
    search_fields = ("=order_id",)
    search_help_text = "An order id (exact)."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # index activity_order (program, order_id) WHERE order_id <> ''
        return queryset.filter(program_id__in=_program_ids(), order_id=term).exclude(order_id=""), False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "created_at", "program", "operation", "key", "member", "response_status")
    list_filter = ("operation", "program")
    list_select_related = ("program", "member")
    ordering = ("-id",)
    raw_id_fields = ("member",)
    search_fields = ("=key",)
    search_help_text = "An idempotency key (exact)."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(program_id__in=_program_ids(), key=term), False  # idempotency_unique_key


@admin.register(LedgerJobRun)
class LedgerJobRunAdmin(ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "job", "as_of", "started_at", "finished_at", "lots", "points", "members")
    list_filter = ("job",)
    ordering = ("-id",)


from . import admin_api_keys  # noqa: E402,F401  (API keys: shown once on creation)
