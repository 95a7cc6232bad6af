"""The member page (/admin/dashboard/members/<id>/) and its actions, and the approval page of
adjustment requests (docs/back-office.md, "A member's page").

Every action: POST with the CSRF token, a permission, the member looked up among those of
`programs_for(user)` (another program's member: 404), the app's service (no ledger SQL here),
a `StaffAction` row in the same transaction, then back to the page with a message. Bad input
re-renders the page with the form's errors (400), nothing written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cards import services as card_services
from cards.models import Card
from loyalty import errors
from loyalty import services as ledger
from loyalty.models import AdjustmentRequest, LedgerEntry, Member, StaffAction
from loyalty.staff_scope import programs_for
from notifications import emails
from notifications.models import EmailMessage
from rewards import services as reward_services
from rewards.models import Redemption
from workflows import services as workflow_services

from . import member_page as page
from .member_forms import (
    BlockForm,
    CouponCancelForm,
    CouponUseForm,
    NoteForm,
    PointsAdjustForm,
    RedeemForm,
    RefundForm,
    RejectForm,
    TransferForm,
)

A = StaffAction.Action
SEARCH_RESULTS = 10

# The permission each action needs.
PERMISSIONS = {
    "adjust": "loyalty.adjust_points",
    "transfer": "loyalty.transfer_points",
    "block": "loyalty.change_member",
    "unblock": "loyalty.change_member",
    "replace_card": "cards.change_card",
    "redeem": "rewards.redeem_for_member",
    "coupon_use": "rewards.redeem_for_member",
    "coupon_cancel": "rewards.redeem_for_member",
    "resend": "notifications.change_emailmessage",
    "refund": "loyalty.refund_order",
    "note": "loyalty.add_membernote",
}


def _page_url(member: Member, anchor: str = "") -> str:
    url = reverse("dashboard:member", args=[member.pk])
    return f"{url}#{anchor}" if anchor else url


def _member(request: HttpRequest, member_id: int) -> Member:
    if member_id >= 2**63:  # not a member id (a bigint): the look-up would fail, not miss
        raise Http404
    return get_object_or_404(page.scoped_members(request.user).select_related("program"), pk=member_id)


def _parse_day(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _ledger_filters(request: HttpRequest) -> dict[str, Any]:
    kind = request.GET.get("kind", "")
    before = request.GET.get("before", "")
    return {
        "kind": kind if kind in LedgerEntry.Kind.values else "",
        "since": _parse_day(request.GET.get("since")),
        "until": _parse_day(request.GET.get("until")),
        "before": int(before) if before.isdigit() and int(before) < 2**63 else None,
    }


def _can(user: Any) -> dict[str, bool]:
    allowed = {name: user.has_perm(perm) for name, perm in PERMISSIONS.items()}
    allowed["approve"] = user.has_perm("loyalty.approve_adjustment")
    return allowed


def _render(
    request: HttpRequest,
    member: Member,
    *,
    forms: dict[str, Form] | None = None,
    confirm: Any = None,
    status: int = 200,
) -> TemplateResponse:
    now = timezone.now()
    user = request.user
    filters = _ledger_filters(request)
    coupons = page.coupons(member=member)
    blank: dict[str, Form] = {
        "adjust": PointsAdjustForm(),
        "transfer": TransferForm(member=member, candidates=page.scoped_members(user)),
        "block": BlockForm(),
        "redeem": RedeemForm(member=member),
        "note": NoteForm(),
    }
    blank.update(forms or {})
    program = member.program
    limit = ledger.adjustment_limit(user, program)
    context = {
        **admin.site.each_context(request),
        "title": str(member),
        "member": member,
        "program": program,
        "balances": page.balances(member=member, now=now),
        "tier": page.tier(member=member, now=now),
        "cards": page.cards(member=member),
        "orders": page.activities(member=member),
        "ledger": page.ledger_page(member=member, **filters),
        "ledger_filters": filters,
        "ledger_kinds": LedgerEntry.Kind.choices,
        "coupons": coupons,
        "coupon_messages": page.coupon_messages(coupons=coupons),
        "emails": page.messages(member=member),
        "referrals": page.referrals(member=member),
        "notes": page.notes(member=member),
        "audit": page.audit(member=member),
        "requests": page.adjustment_requests(member=member),
        "forms": blank,
        "confirm": confirm,
        "can": _can(user),
        "adjust_limit": limit,
        "admin_change_url": reverse("admin:loyalty_member_change", args=[member.pk]),
        "refund_key": RefundForm().initial["idempotency_key"],
        "now": now,
    }
    return TemplateResponse(request, "dashboard/member/page.html", context, status=status)


@staff_member_required
@require_GET
def member_page(request: HttpRequest, member_id: int) -> HttpResponse:
    member = _member(request, member_id)
    return _render(request, member)


@staff_member_required
@require_GET
def member_ledger(request: HttpRequest, member_id: int) -> HttpResponse:
    """The ledger section alone (htmx: filtering and paging without reloading the page)."""
    member = _member(request, member_id)
    filters = _ledger_filters(request)
    context = {
        "member": member,
        "program": member.program,
        "ledger": page.ledger_page(member=member, **filters),
        "ledger_filters": filters,
        "ledger_kinds": LedgerEntry.Kind.choices,
    }
    return TemplateResponse(request, "dashboard/member/_ledger.html", context)


@staff_member_required
@require_GET
def member_search(request: HttpRequest) -> HttpResponse:
    """Members to pick as a transfer's receiver, by name, email or card number, among those the
    staff user may see and in the program of member `for` (itself left out). At most 10."""
    term = (request.GET.get("q") or "").strip()
    sender = _member(request, int(request.GET["for"])) if (request.GET.get("for") or "").isdigit() else None
    found: list[Member] = []
    if sender is not None and len(term) >= 2:
        members = page.scoped_members(request.user).filter(program_id=sender.program_id).exclude(pk=sender.pk)
        if term.replace(" ", "").isdigit():
            digits = term.replace(" ", "")
            card_members = Card.objects.filter(
                program_id=sender.program_id, number__startswith=digits, member__isnull=False
            ).values("member_id")[:SEARCH_RESULTS]
            match = Q(pk__in=card_members) | Q(external_id=digits)
            if len(digits) < 19:
                match |= Q(pk=int(digits))
            found = list(members.filter(match)[:SEARCH_RESULTS])
        elif "@" in term:
            found = list(members.filter(email__istartswith=term)[:SEARCH_RESULTS])
        else:
            words = term.split()
            match = Q()
            for word in words:
                match &= Q(first_name__istartswith=word) | Q(last_name__istartswith=word)
            if len(words) == 1:  # or the beginning of an email
                match |= Q(email__istartswith=term)
            found = list(members.filter(match).order_by("last_name", "first_name", "id")[:SEARCH_RESULTS])
    return TemplateResponse(
        request, "dashboard/member/_search_results.html", {"found": found, "term": term, "sender": sender}
    )


def member_action(name: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """POST only, the action's permission (403), the member among the user's programs (404)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @staff_member_required
        @require_POST
        @wraps(view)
        def wrapper(request: HttpRequest, member_id: int, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(PERMISSIONS[name]):
                raise PermissionDenied
            return view(request, _member(request, member_id), *args, **kwargs)

        return wrapper

    return decorate


def _refused(
    request: HttpRequest, member: Member, name: str, form: Form, exc: errors.LoyaltyError | None = None
) -> TemplateResponse:
    if exc is not None:
        field = exc.details.get("field")
        form.add_error(field if field in form.fields else None, exc.message)
    messages.error(request, "Nothing was done: please correct the form below.")
    return _render(request, member, forms={name: form}, status=400)


def _done(request: HttpRequest, member: Member, text: str, anchor: str = "") -> HttpResponseRedirect:
    messages.success(request, text)
    return HttpResponseRedirect(_page_url(member, anchor))


# -- points ---------------------------------------------------------------------------------


@member_action("adjust")
def adjust(request: HttpRequest, member: Member) -> HttpResponse:
    form = PointsAdjustForm(request.POST)
    if not form.is_valid():
        return _refused(request, member, "adjust", form)
    try:
        outcome = ledger.staff_adjust(
            actor=request.user,
            member=member,
            points=form.cleaned_data["points"],
            reason=form.cleaned_data["reason"],
            idempotency_key=form.service_key("adjust"),
            confirmed=form.confirmed,
            notify_member=form.cleaned_data["notify_member"],
        )
    except errors.LoyaltyError as exc:
        return _refused(request, member, "adjust", form, exc)
    name = member.program.points_name
    if outcome.status == "confirm":
        return _render(request, member, forms={"adjust": form}, confirm=outcome.check)
    if outcome.status == "requested":
        assert outcome.request is not None
        messages.warning(
            request,
            f"{outcome.request.points:+d} {name} wait for another staff member's approval "
            f"(request {outcome.request.pk}).",
        )
        return HttpResponseRedirect(_page_url(member, "requests"))
    assert outcome.result is not None
    if outcome.replayed:
        messages.warning(request, "This adjustment was already posted (the form was sent twice); nothing more.")
        return HttpResponseRedirect(_page_url(member))
    balance = outcome.result.balance
    return _done(
        request,
        member,
        f"Posted {outcome.check.points:+d} {name}. "
        f"New balance: {balance.available} available, {balance.pending} pending.",
    )


@member_action("transfer")
def transfer(request: HttpRequest, member: Member) -> HttpResponse:
    form = TransferForm(request.POST, member=member, candidates=page.scoped_members(request.user))
    if not form.is_valid():
        return _refused(request, member, "transfer", form)
    receiver: Member = form.cleaned_data["to_member"]
    points, reason = form.cleaned_data["points"], form.cleaned_data["reason"]
    try:
        with transaction.atomic():
            result = ledger.points_transfer(
                program=member.program,
                from_member_id=member.pk,
                to_member_id=receiver.pk,
                points=points,
                reason=reason,
                actor=request.user,
                idempotency_key=form.service_key("transfer"),
            )
            if not result.replayed:
                for who, other, sign in ((member, receiver, -1), (receiver, member, 1)):
                    ledger.staff_action_record(
                        actor=request.user,
                        action=A.TRANSFER,
                        program=member.program,
                        member=who,
                        reason=reason,
                        details={"points": sign * points, "other_member": other.pk},
                    )
    except errors.LoyaltyError as exc:
        return _refused(request, member, "transfer", form, exc)
    if result.replayed:
        messages.warning(request, "This transfer was already posted (the form was sent twice); nothing more.")
        return HttpResponseRedirect(_page_url(member))
    return _done(
        request,
        member,
        f"Transferred {points} {member.program.points_name} to {receiver}. "
        f"New balance: {result.balance.available} available.",
    )


# -- the member's status, cards, notes --------------------------------------------------------


@member_action("block")
def block(request: HttpRequest, member: Member) -> HttpResponse:
    form = BlockForm(request.POST)
    if not form.is_valid():
        return _refused(request, member, "block", form)
    if member.is_blocked:
        return _done(request, member, f"{member} was already blocked.")
    with transaction.atomic():
        ledger.member_set_status(member=member, status=Member.Status.BLOCKED, actor=request.user)
        ledger.staff_action_record(
            actor=request.user,
            action=A.BLOCK,
            program=member.program,
            member=member,
            reason=form.cleaned_data["reason"],
        )
    return _done(request, member, f"{member} is blocked: no earning, no redemption until unblocked.")


@member_action("unblock")
def unblock(request: HttpRequest, member: Member) -> HttpResponse:
    if not member.is_blocked:
        return _done(request, member, f"{member} was not blocked.")
    with transaction.atomic():
        ledger.member_set_status(member=member, status=Member.Status.ACTIVE, actor=request.user)
        ledger.staff_action_record(
            actor=request.user,
            action=A.UNBLOCK,
            program=member.program,
            member=member,
            reason=(request.POST.get("reason") or "").strip(),
        )
    return _done(request, member, f"{member} is active again.")


@member_action("replace_card")
def replace_card(request: HttpRequest, member: Member, card_id: int) -> HttpResponse:
    if card_id >= 2**63:
        raise Http404
    card = get_object_or_404(Card.objects.select_related("program"), pk=card_id, member=member)
    try:
        with transaction.atomic():
            new = card_services.card_replace(card=card, actor=request.user)
            ledger.staff_action_record(
                actor=request.user,
                action=A.CARD_REPLACE,
                program=member.program,
                member=member,
                reason=(request.POST.get("reason") or "").strip(),
                details={"old_card": card.number, "new_card": new.number},
            )
    except errors.LoyaltyError as exc:
        messages.error(request, f"Card {card.number} was not replaced: {exc.message}")
        return HttpResponseRedirect(_page_url(member, "cards"))
    return _done(request, member, f"Card {card.number} is blocked; its replacement is card {new.number}.", "cards")


@member_action("note")
def note(request: HttpRequest, member: Member) -> HttpResponse:
    from loyalty.models import MemberNote

    form = NoteForm(request.POST)
    if not form.is_valid():
        return _refused(request, member, "note", form)
    with transaction.atomic():
        written = MemberNote.objects.create(
            program=member.program,
            member=member,
            author=request.user,
            text=form.cleaned_data["text"],
            created_at=timezone.now(),
        )
        ledger.staff_action_record(
            actor=request.user,
            action=A.NOTE,
            program=member.program,
            member=member,
            details={"note": written.pk, "text": written.text[:200]},
        )
    return _done(request, member, "Note added.", "notes")


# -- rewards and coupons --------------------------------------------------------------------------


@member_action("redeem")
def redeem(request: HttpRequest, member: Member) -> HttpResponse:
    form = RedeemForm(request.POST, member=member)
    if not form.is_valid():
        return _refused(request, member, "redeem", form)
    reward = form.cleaned_data["reward"]
    try:
        with transaction.atomic():
            result = reward_services.reward_redeem(
                program=member.program,
                member=member,
                reward=reward,
                points=form.cleaned_data["points"],
                idempotency_key=form.service_key("redeem"),
            )
            if not result.replayed:
                ledger.staff_action_record(
                    actor=request.user,
                    action=A.REDEEM,
                    program=member.program,
                    member=member,
                    details={
                        "reward": reward.name,
                        "coupon": result.redemption.code,
                        "points": result.redemption.points,
                    },
                )
    except errors.LoyaltyError as exc:
        return _refused(request, member, "redeem", form, exc)
    coupon = result.redemption
    return _done(request, member, f"Coupon {coupon.code} ({reward.name}) issued for {coupon.points} points.", "coupons")


def _coupon(member: Member, form: Form) -> Redemption:
    coupon_id = form.cleaned_data["coupon"]
    if not 0 < coupon_id < 2**63:
        raise Http404
    return get_object_or_404(Redemption, pk=coupon_id, member=member)


@member_action("coupon_use")
def coupon_use(request: HttpRequest, member: Member) -> HttpResponse:
    form = CouponUseForm(request.POST)
    if not form.is_valid():
        return _refused(request, member, "coupon_use", form)
    coupon = _coupon(member, form)
    try:
        with transaction.atomic():
            reward_services.redemption_use(
                program=member.program, code=coupon.code, order_id=form.cleaned_data["order_id"]
            )
            ledger.staff_action_record(
                actor=request.user,
                action=A.COUPON_USE,
                program=member.program,
                member=member,
                details={"coupon": coupon.code, "order_id": form.cleaned_data["order_id"]},
            )
    except errors.LoyaltyError as exc:
        messages.error(request, f"Coupon {coupon.code}: {exc.message}")
        return HttpResponseRedirect(_page_url(member, "coupons"))
    return _done(request, member, f"Coupon {coupon.code} is marked used.", "coupons")


@member_action("coupon_cancel")
def coupon_cancel(request: HttpRequest, member: Member) -> HttpResponse:
    form = CouponCancelForm(request.POST)
    if not form.is_valid():
        return _refused(request, member, "coupon_cancel", form)
    coupon = _coupon(member, form)
    reason = form.cleaned_data["reason"] or "Cancelled by staff"
    try:
        with transaction.atomic():
            cancelled = reward_services.redemption_cancel(program=member.program, code=coupon.code, reason=reason)
            ledger.staff_action_record(
                actor=request.user,
                action=A.COUPON_CANCEL,
                program=member.program,
                member=member,
                reason=reason,
                details={"coupon": coupon.code, "points_back": cancelled.points if cancelled.refund_entry_id else 0},
            )
    except errors.LoyaltyError as exc:
        messages.error(request, f"Coupon {coupon.code}: {exc.message}")
        return HttpResponseRedirect(_page_url(member, "coupons"))
    return _done(request, member, f"Coupon {coupon.code} is cancelled; its points are back.", "coupons")


@member_action("resend")
def resend(request: HttpRequest, member: Member) -> HttpResponse:
    """Send emails of this member again: one message (`message`) or a coupon's (`coupon`)."""
    ids = [int(v) for v in request.POST.getlist("message") if v.isdigit() and int(v) < 2**63]
    coupon = request.POST.get("coupon", "")
    query = EmailMessage.objects.filter(member=member)
    if coupon.isdigit() and int(coupon) < 2**63:
        query = query.filter(source=f"redemption:{int(coupon)}")
    elif ids:
        query = query.filter(pk__in=ids)
    else:
        messages.error(request, "Choose the email to send again.")
        return HttpResponseRedirect(_page_url(member, "emails"))
    found = list(query.values_list("pk", flat=True)[:20])
    if not found:
        messages.error(request, "This member has no such email.")
        return HttpResponseRedirect(_page_url(member, "emails"))
    with transaction.atomic():
        count = emails.messages_resend(message_ids=found)
        ledger.staff_action_record(
            actor=request.user,
            action=A.EMAIL_RESEND,
            program=member.program,
            member=member,
            details={"messages": found},
        )
    return _done(request, member, f"{count} email(s) queued to be sent again.", "emails")


# -- orders ---------------------------------------------------------------------------------------


@member_action("refund")
def refund(request: HttpRequest, member: Member) -> HttpResponse:
    form = RefundForm(request.POST)
    if not form.is_valid():
        return _refused(request, member, "refund", form)
    order_id, amount = form.cleaned_data["order_id"], form.cleaned_data["amount"]
    if not member.activities.filter(type="purchase", order_id=order_id).exists():
        form.add_error(None, f"{member} has no order {order_id}.")
        return _refused(request, member, "refund", form)
    try:
        with transaction.atomic():
            result = workflow_services.refund_report(
                program=member.program, order_id=order_id, amount=amount, idempotency_key=form.service_key("refund")
            )
            if not result.replayed:
                ledger.staff_action_record(
                    actor=request.user,
                    action=A.REFUND,
                    program=member.program,
                    member=member,
                    reason=form.cleaned_data["reason"],
                    details={"order_id": order_id, "amount": amount, "points": result.points},
                )
    except errors.LoyaltyError as exc:
        return _refused(request, member, "refund", form, exc)
    return _done(
        request,
        member,
        f"Refunded {amount} of order {order_id}: {-result.points} {member.program.points_name} taken back.",
        "orders",
    )


# -- adjustment requests ----------------------------------------------------------------------


@staff_member_required
@require_GET
def adjustment_requests(request: HttpRequest) -> HttpResponse:
    """The pending adjustment requests of the user's programs, oldest first."""
    pending = list(
        AdjustmentRequest.objects.filter(
            status=AdjustmentRequest.Status.PENDING, program__in=programs_for(request.user)
        )
        .select_related("member", "requested_by", "program")
        .order_by("id")[:200]
    )
    context = {
        **admin.site.each_context(request),
        "title": "Adjustments waiting for approval",
        "pending": pending,
        "can_approve": request.user.has_perm("loyalty.approve_adjustment"),
        "reject_form": RejectForm(),
    }
    return TemplateResponse(request, "dashboard/member/requests.html", context)


def _decision_back(request: HttpRequest, adjustment: AdjustmentRequest | None) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if target == "member" and adjustment is not None:
        return HttpResponseRedirect(_page_url(adjustment.member, "requests"))
    return HttpResponseRedirect(reverse("dashboard:adjustment_requests"))


def _decide(request: HttpRequest, request_id: int, decide: Callable[..., Any], verb: str) -> HttpResponse:
    if not request.user.has_perm("loyalty.approve_adjustment"):
        raise PermissionDenied
    if request_id >= 2**63:
        raise Http404
    found = get_object_or_404(
        AdjustmentRequest.objects.select_related("member"), pk=request_id, program__in=programs_for(request.user)
    )
    try:
        outcome = decide()
    except errors.SelfApproval as exc:
        messages.error(request, exc.message)
        return _decision_back(request, found)
    except errors.LoyaltyError as exc:
        messages.error(request, f"Request {request_id}: {exc.message}")
        return _decision_back(request, found)
    if outcome.already:
        messages.warning(request, f"Request {request_id} was already {outcome.request.status}; nothing more was done.")
    else:
        messages.success(request, f"Request {request_id} ({outcome.request.points:+d} for {found.member}) {verb}.")
    return _decision_back(request, found)


@staff_member_required
@require_POST
def adjustment_approve(request: HttpRequest, request_id: int) -> HttpResponse:
    return _decide(
        request,
        request_id,
        lambda: ledger.adjustment_request_approve(
            request_id=request_id, approver=request.user, program_ids=programs_for(request.user).values("id")
        ),
        "approved and posted",
    )


@staff_member_required
@require_POST
def adjustment_reject(request: HttpRequest, request_id: int) -> HttpResponse:
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Request {request_id}: a rejection needs a reason.")
        found = AdjustmentRequest.objects.filter(
            pk=min(request_id, 2**63 - 1), program__in=programs_for(request.user)
        ).first()
        return _decision_back(request, found)
    return _decide(
        request,
        request_id,
        lambda: ledger.adjustment_request_reject(
            request_id=request_id,
            approver=request.user,
            reason=form.cleaned_data["reason"],
            program_ids=programs_for(request.user).values("id"),
        ),
        "rejected",
    )
