"""Staff admin of cards (docs/contributing.md: declarative; every write calls `cards.services`).

A card's status and member never change through a form: the change page is read-only and
the writes are the actions (block, unblock, replace) and the assign / replace pages, each a
service call. The change page lists the card's latest events (`CardEvent`, written by the
services): they are its history, so the admin's "History" link leads there. Cards are
created by batches (`batch_admin`) and by the services (digital cards, replacements), never
added by hand.

Scale (a million cards and more): the change list never counts the table (the capped
paginator and `show_full_result_count = False` of `loyalty.admin.LargeTableAdmin`, no
facets), sorts by id only, and the search turns its term into an indexed look-up: a number
or number prefix (`number LIKE 'digits%'` on the varchar_pattern_ops index that Django
creates for the unique `number`), or a member's exact email (index member_program_email,
then cards by `member_id`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from loyalty.admin import MEMBER_SEARCHES, LargeTableAdmin, ProgramScopedAdmin
from loyalty.errors import LoyaltyError
from loyalty.models import Member, Program
from loyalty.selectors import member_ledger

from . import numbers, selectors, services
from .models import Card

RECENT_ENTRIES = 10
RECENT_EVENTS = 20


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


class CardAssignForm(forms.Form):
    member = forms.ModelChoiceField(
        queryset=Member.objects.none(),
        help_text="The member who gets this card: type part of their name, email or external id.",
    )

    def __init__(self, *args: Any, card: Card, admin_site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["member"]
        # Members of the card's program only; the autocomplete widget never renders a million
        # options (it asks the member admin's search as the user types).
        field.widget = AutocompleteSelect(Card._meta.get_field("member"), admin_site)
        field.queryset = Member.objects.filter(program_id=card.program_id)  # also gives the widget its choices
        field.error_messages["invalid_choice"] = "No member with this id in the card's program."


class CardReplaceForm(forms.Form):
    new_number = forms.CharField(
        required=False,
        max_length=40,
        label="Stock card handed out",
        help_text="The number of an unassigned card of the program given to the customer, "
        "or empty for a new card with a fresh number.",
    )

    def clean_new_number(self) -> str:
        number = numbers.normalize(self.cleaned_data.get("new_number") or "")
        if number and not numbers.is_well_formed(number):
            raise forms.ValidationError("This is not a valid card number (check the digits).")
        return number


@admin.register(Card)
class CardAdmin(ProgramScopedAdmin, LargeTableAdmin):
    list_display = ("number", "program", "member", "status", "kind", "batch", "created_at")
    list_filter = ("status", "kind", "program", "batch")
    list_select_related = ("program", "member", "batch")
    ordering = ("-id",)
    show_facets = admin.ShowFacets.NEVER  # facets count every filter value over the whole table
    search_fields = ("number",)  # shows the search box; get_search_results does the look-up
    search_help_text = "A card number or its first digits, or a member's exact email."
    autocomplete_fields = ("program", "member", "batch")
    actions = ("block", "unblock", "replace")
    fieldsets = (
        (None, {"fields": ("number", "program", "kind", "status", "batch")}),
        ("Member", {"fields": ("member_link", "balance", "recent_entries")}),
        (
            "History",
            {
                "fields": (
                    "created_at",
                    "assigned_at",
                    "claimed_at",
                    "blocked_at",
                    "replaced_by",
                    "replaces_card",
                    "events",
                )
            },
        ),
    )
    readonly_fields = (
        "number",
        "program",
        "kind",
        "status",
        "batch",
        "member_link",
        "balance",
        "recent_entries",
        "created_at",
        "assigned_at",
        "claimed_at",
        "blocked_at",
        "replaced_by",
        "replaces_card",
        "events",
    )

    # -- permissions: no hand-made or deleted cards, no direct edits -----------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches and the services create cards

    def has_delete_permission(self, request: HttpRequest, obj: Card | None = None) -> bool:
        return False  # numbers are never reused; block or replace a card instead

    def save_model(self, request: HttpRequest, obj: Card, form: Any, change: bool) -> None:
        # Every field is read-only: a save would only write back a state read earlier.
        return

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("program", "member", "batch", "replaced_by")

    # -- search ---------------------------------------------------------------------------------

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term and " " not in term:
            programs = list(Program.objects.order_by().values_list("id", flat=True))
            return queryset.filter(member__program_id__in=programs, member__email=term.lower()), False
        digits = numbers.normalize(term)
        if digits.isdigit() and len(digits) <= Card._meta.get_field("number").max_length:
            return queryset.filter(number__startswith=digits), False
        return queryset.none(), False

    # -- the change page --------------------------------------------------------------------------

    @admin.display(description="member")
    def member_link(self, obj: Card) -> str:
        if obj.member is None:
            return "— (unassigned)"
        member = obj.member
        label = str(member)
        if member.enrollment_channel == Member.Channel.CARD and not member.email and obj.claimed_at is None:
            label += " (anonymous, not claimed yet)"
        return format_html(
            '<a href="{}">{}</a> · {} · {}',
            reverse("admin:loyalty_member_change", args=[member.pk]),
            label,
            member.email or "no email",
            member.get_status_display(),
        )

    @admin.display(description="balance")
    def balance(self, obj: Card) -> str:
        if obj.member is None:
            return "—"
        member = obj.member
        return format_html(
            "{} available · {} pending · {} earned in all",
            member.available,
            member.pending,
            member.lifetime_earned,
        )

    @admin.display(description="latest ledger entries")
    def recent_entries(self, obj: Card) -> str:
        if obj.member is None:
            return "—"
        entries = list(member_ledger(member=obj.member)[:RECENT_ENTRIES])
        if not entries:
            return "No ledger entries yet."
        header = format_html_join(
            "",
            "<th>{}</th>",
            ((h,) for h in ("Entry", "Created", "Kind", "Points", "Remaining", "Expires at", "Reason", "Reference")),
        )
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td></tr>",
            (
                (
                    reverse("admin:loyalty_ledgerentry_change", args=[e.pk]),
                    e.pk,
                    _when(e.created_at),
                    e.get_kind_display(),
                    f"{e.points:+d}",
                    e.remaining,
                    _when(e.expires_at),
                    e.reason,
                    e.reference,
                )
                for e in entries
            ),
        )
        full = f"{reverse('admin:loyalty_ledgerentry_changelist')}?member__id__exact={obj.member_id}"
        return format_html(
            '<table class="recent-entries"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
            '<p><a href="{}">Full ledger of this member</a></p>',
            header,
            rows,
            full,
        )

    @admin.display(description=f"events (latest {RECENT_EVENTS})")
    def events(self, obj: Card) -> str:
        events = list(selectors.card_events(card=obj, limit=RECENT_EVENTS))
        if not events:
            return "No events recorded."
        header = format_html_join("", "<th>{}</th>", ((h,) for h in ("When", "What", "Member", "By", "Note")))
        rows = format_html_join(
            "",
            '<tr class="card-event card-event-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    e.kind,
                    _when(e.at),
                    e.get_kind_display(),
                    format_html(
                        '<a href="{}">{}</a>', reverse("admin:loyalty_member_change", args=[e.member_id]), e.member
                    )
                    if e.member_id
                    else "—",
                    e.actor or "customer / system",
                    e.note,
                )
                for e in events
            ),
        )
        return format_html(
            '<table class="card-events" id="card-events"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            header,
            rows,
        )

    @admin.display(description="replaces")
    def replaces_card(self, obj: Card) -> str:
        old = Card.objects.filter(replaced_by=obj).only("pk", "number").first()
        if old is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:cards_card_change", args=[old.pk]), old.number)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        card = self.get_object(request, unquote(object_id))
        can_change = card is not None and self.has_change_permission(request, card)
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "can_assign": can_change and card.status == Card.Status.UNASSIGNED,
            # Active cards and stock (a stolen box) can be blocked; unblocking gives stock back
            # to stock and a member's card back to the member, unless it was replaced.
            "can_block": can_change and card.status in (Card.Status.ACTIVE, Card.Status.UNASSIGNED),
            "can_unblock": can_change and card.status == Card.Status.BLOCKED and card.replaced_by_id is None,
            "can_replace": can_change
            and card.status in (Card.Status.ACTIVE, Card.Status.BLOCKED)
            and card.member_id is not None
            and card.replaced_by_id is None,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """The card's history is its events, shown on the change page."""
        card = self.get_object(request, unquote(object_id))
        if card is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, card):
            raise PermissionDenied
        return HttpResponseRedirect(self._change_url(card) + "#card-events")

    # -- actions ----------------------------------------------------------------------------------

    def _run(self, request: HttpRequest, queryset: QuerySet, verb: str, call: Any) -> list[Any]:
        """Call a service per selected card; a refusal is reported and the others still run."""
        done, refused = [], []
        for card in queryset.select_related("program").order_by("pk").iterator(chunk_size=200):
            try:
                done.append(call(card))
            except LoyaltyError as exc:
                refused.append(f"{card.number}: {exc.message}")
        if done:
            self.message_user(request, f"{verb} {len(done)} card{'s' if len(done) != 1 else ''}.", messages.SUCCESS)
        if refused:
            shown = "; ".join(refused[:10]) + (f"; and {len(refused) - 10} more" if len(refused) > 10 else "")
            self.message_user(request, f"Not {verb.lower()}: {shown}", messages.WARNING)
        return done

    @admin.action(description="Block selected cards", permissions=["change"])
    def block(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, "Blocked", lambda card: services.card_block(card=card, actor=request.user))

    @admin.action(description="Unblock selected cards", permissions=["change"])
    def unblock(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, "Unblocked", lambda card: services.card_unblock(card=card, actor=request.user))

    @admin.action(description="Replace selected cards (new number, old card blocked)", permissions=["change"])
    def replace(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, "Replaced", lambda card: services.card_replace(card=card, actor=request.user))

    # -- custom pages: assign, replace, block / unblock from the change page -----------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/assign/",
                self.admin_site.admin_view(self.assign_view),
                name="{}_{}_assign".format(*info),
            ),
            path(
                "<path:object_id>/replace/",
                self.admin_site.admin_view(self.replace_view),
                name="{}_{}_replace".format(*info),
            ),
            path(
                "<path:object_id>/set-status/",
                self.admin_site.admin_view(self.set_status_view),
                name="{}_{}_set_status".format(*info),
            ),
            *super().get_urls(),
        ]

    def _card_for_write(self, request: HttpRequest, object_id: str) -> Card | HttpResponse:
        card = self.get_object(request, unquote(object_id))
        if card is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, card):
            raise PermissionDenied
        return card

    def _change_url(self, card: Card) -> str:
        return reverse("admin:cards_card_change", args=[card.pk])

    def _render_page(
        self, request: HttpRequest, card: Card, form: forms.Form, *, title: str, submit_label: str, intro: str
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "subtitle": card.number,
            "card": card,
            "form": form,
            "submit_label": submit_label,
            "intro": intro,
            "media": self.media + form.media,
            "change_url": self._change_url(card),
        }
        return TemplateResponse(request, "admin/cards/card/card_form.html", context)

    def assign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        card = self._card_for_write(request, object_id)
        if not isinstance(card, Card):
            return card
        if request.method == "POST":
            form = CardAssignForm(request.POST, card=card, admin_site=self.admin_site)
            if form.is_valid():
                member = form.cleaned_data["member"]
                try:
                    services.card_assign(program=card.program, number=card.number, member=member, actor=request.user)
                except LoyaltyError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.message_user(request, f"Card {card.number} assigned to {member}.", messages.SUCCESS)
                    return HttpResponseRedirect(self._change_url(card))
        else:
            form = CardAssignForm(card=card, admin_site=self.admin_site)
        return self._render_page(
            request,
            card,
            form,
            title="Assign card",
            submit_label="Assign",
            intro="The card becomes the member's active card. Only an unassigned card can be assigned.",
        )

    def replace_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        card = self._card_for_write(request, object_id)
        if not isinstance(card, Card):
            return card
        if request.method == "POST":
            form = CardReplaceForm(request.POST)
            if form.is_valid():
                try:
                    new = services.card_replace(
                        card=card, actor=request.user, new_number=form.cleaned_data["new_number"] or None
                    )
                except LoyaltyError as exc:
                    field = "new_number" if exc.details.get("number") != card.number else None
                    form.add_error(field, exc.message)
                else:
                    self.message_user(
                        request,
                        f"Card {card.number} is blocked and replaced by {new.number}; the balance stays with "
                        f"{new.member}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(self._change_url(new))
        else:
            form = CardReplaceForm()
        return self._render_page(
            request,
            card,
            form,
            title="Replace card",
            submit_label="Replace",
            intro="The card is blocked for good and its member gets the replacement. "
            "Points stay with the member: nothing is posted.",
        )

    def set_status_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST-only block / unblock buttons of the change page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        card = self._card_for_write(request, object_id)
        if not isinstance(card, Card):
            return card
        operation = request.POST.get("operation")
        call = {"block": services.card_block, "unblock": services.card_unblock}.get(operation or "")
        if call is None:
            self.message_user(request, "Unknown operation.", messages.ERROR)
        else:
            try:
                call(card=card, actor=request.user)
            except LoyaltyError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Card {card.number} is {card.get_status_display().lower()}.")
        return HttpResponseRedirect(self._change_url(card))


# The member search finds members by card number (loyalty's member admin cannot import cards).
MEMBER_SEARCH_CARD_PREFIX = 6  # digits at least: a shorter prefix is shared by too many cards
MEMBER_SEARCH_CARD_LIMIT = 100


def _members_by_card_number(term: str) -> list[int] | None:
    """Members whose card number is `term` or starts with it (the number's unique index)."""
    digits = numbers.normalize(term)
    if not digits.isdigit() or len(digits) < MEMBER_SEARCH_CARD_PREFIX:
        return None
    cards = Card.objects.filter(number__startswith=digits, member__isnull=False).order_by("number")
    return list(cards.values_list("member_id", flat=True)[:MEMBER_SEARCH_CARD_LIMIT])


MEMBER_SEARCHES.append(_members_by_card_number)


# Registered on import: CardBatch admin (bulk creation pages), member CSV import and export pages.
from . import batch_admin, import_admin  # noqa: E402,F401
