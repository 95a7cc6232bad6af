"""The member's posting pages: adjust points and transfer points (`MemberAdmin` inherits
them). Each posts through `loyalty.services` with an idempotency key from the form, so a double
submit posts once; a refusal is shown on the form."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from .. import errors, services
from ..forms import IdempotentForm, PointsAdjustForm, PointsTransferForm
from ..models import Member


def can_adjust_points(user: Any) -> bool:
    """Manual adjustments need `loyalty.adjust_points` (the owner and manager groups have it)."""
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.adjust_points"))


def can_transfer_points(user: Any) -> bool:
    """Transfers between members need `loyalty.transfer_points` (owner and manager groups)."""
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.transfer_points"))


class MemberPostingPages:
    """The adjust and transfer pages of the member admin (a `ModelAdmin` of `Member`)."""

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
        confirm = None
        if request.method == "POST":
            form = PointsAdjustForm(request.POST)
            if form.is_valid():
                points, reason = form.cleaned_data["points"], form.cleaned_data["reason"]
                try:
                    outcome = services.staff_adjust(
                        actor=request.user,
                        member=member,
                        points=points,
                        reason=reason,
                        idempotency_key=form.service_key("adjust"),
                        confirmed=form.confirmed,
                        notify_member=form.cleaned_data["notify_member"],
                    )
                except errors.LoyaltyError as exc:
                    _add_domain_error(form, exc)
                else:
                    if outcome.status == "confirm":
                        confirm = outcome.check
                    else:
                        self._adjust_done(request, member, outcome)
                        return HttpResponseRedirect(self._change_url(member))
        else:
            form = PointsAdjustForm()
        response = self._render_posting_page(
            request,
            member,
            form,
            title="Adjust points",
            submit_label="Post adjustment",
            intro="A credit becomes a lot that expires like points earned today; a debit takes available "
            "points first, then pending ones, and may leave a debt that later credits pay.",
        )
        response.context_data["confirm"] = confirm
        return response

    def _adjust_done(self, request: HttpRequest, member: Member, outcome: services.StaffAdjustOutcome) -> None:
        program = member.program
        if outcome.status == "requested":
            req = outcome.request
            assert req is not None
            self.message_user(
                request,
                f"{req.points:+d} {program.points_name} for {member} wait for another staff member's approval "
                f"(request {req.pk}). {outcome.check.approval_reason if not outcome.replayed else ''}".strip(),
                messages.WARNING,
            )
            return
        result = outcome.result
        assert result is not None
        if result.replayed:
            self.message_user(
                request,
                "This adjustment was already posted (the form was sent twice); nothing was posted again.",
                messages.WARNING,
            )
            return
        self.log_change(request, member, f"Adjusted points by {outcome.check.points:+d}")
        self.message_user(
            request,
            (
                f"Posted {outcome.check.points:+d} {program.points_name} to {member}. New balance: "
                f"{result.balance.available} available, {result.balance.pending} pending."
            ),
            messages.SUCCESS,
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
