"""Forms of the loyalty core's staff pages (admin). They parse and validate input; the
writes they lead to are calls of `loyalty.services`."""

from __future__ import annotations

import uuid
import zoneinfo

from django import forms
from django.conf import settings
from django.db.models import Q

from .models import Member, Program
from .services import member_email_taken

TIMEZONE_CHOICES = [(name, name) for name in sorted(zoneinfo.available_timezones())]


class ProgramAdminForm(forms.ModelForm):
    timezone = forms.ChoiceField(
        choices=TIMEZONE_CHOICES,
        initial="UTC",
        help_text="Day boundaries (expiry dates, birthdays) use this time zone.",
    )

    logo_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        label="Logo URL",
        help_text="An https address of the logo (PNG or SVG, about 200 x 60 px). Empty: the program's name.",
    )

    class Meta:
        model = Program
        fields = (
            "name",
            "slug",
            "is_active",
            "points_name",
            "currency",
            "earn_rate",
            "min_redemption",
            "enrol_on_first_purchase",
            "pending_days",
            "expiry_days",
            "tier_metric",
            "tier_window_days",
            "adjustment_confirm_above",
            "adjustment_approval_above",
            "manager_adjustment_limit",
            "support_adjustment_limit",
            "timezone",
            "brand_color",
            "logo_url",
            "language",
            "terms",
            "widget_origins",
        )
        # A native colour picker: it shows the colour and always answers #rrggbb.
        widgets = {
            "brand_color": forms.TextInput(attrs={"type": "color"}),
            "widget_origins": forms.Textarea(attrs={"rows": 3}),
        }

    def clean_currency(self) -> str:
        currency = (self.cleaned_data.get("currency") or "").strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise forms.ValidationError("Use a three-letter ISO 4217 code, e.g. EUR.")
        return currency


class MemberAdminForm(forms.ModelForm):
    """Profile fields only: balances are not form fields (they change through the ledger)."""

    class Meta:
        model = Member
        # The admin narrows this per page (add: + program; change: program is read-only).
        fields = (
            "program",
            "external_id",
            "email",
            "first_name",
            "last_name",
            "birthday",
            "email_consent",
            "referred_by",
            "user",
        )

    def clean_email(self) -> str:
        # Stored lower-case, like `member_enrol` does, so exact look-ups find it.
        email = (self.cleaned_data.get("email") or "").strip().lower()
        # One member per email in a program (the services refuse it too; shown on the field).
        program = self.cleaned_data.get("program") or getattr(self.instance, "program", None)
        if (
            email
            and program is not None
            and member_email_taken(program_id=program.pk, email=email, exclude_member_id=self.instance.pk)
        ):
            raise forms.ValidationError("A member of this program already has this email.", code="duplicate_email")
        return email

    def clean_external_id(self) -> str | None:
        value = self.cleaned_data.get("external_id")
        return (value or "").strip() or None


class IdempotentForm(forms.Form):
    """A staff form whose submit must take effect once. `idempotency_key` is drawn when the
    form is first rendered and travels in a hidden field: submitting the same page twice
    (a double click, a browser resubmit) acts once (rule 4)."""

    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("initial", {}).setdefault("idempotency_key", uuid.uuid4())
        super().__init__(*args, **kwargs)

    def service_key(self, operation: str) -> str:
        """The ledger idempotency key, namespaced so it never meets an API client's key."""
        return f"admin:{operation}:{self.cleaned_data['idempotency_key']}"


class PointsAdjustForm(IdempotentForm):
    points = forms.IntegerField(
        help_text="Signed: 50 credits 50 points, -50 takes 50 points away (a debit may leave a debt).",
    )
    reason = forms.CharField(
        max_length=255, help_text="Required; shown in the member's history.", widget=forms.TextInput(attrs={"size": 60})
    )
    # Set by the confirmation step (docs/back-office.md): the points the user confirmed. A
    # confirmation counts only for these very points.
    confirm_points = forms.IntegerField(required=False, widget=forms.HiddenInput)
    notify_member = forms.BooleanField(
        required=False,
        label="Tell the member",
        help_text="Email the member about this adjustment, with the reason (when the program sends the "
        "points added / points removed emails and the member has an address).",
    )

    def clean_points(self) -> int:
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("Points must not be zero.")
        limit = settings.LOYALTY_MAX_POINTS_PER_POST
        if abs(points) > limit:
            raise forms.ValidationError(f"At most {limit} points can be posted at once.")
        return points

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("An adjustment needs a reason.")
        return reason

    @property
    def confirmed(self) -> bool:
        """The user confirmed these points on the confirmation step."""
        data = self.cleaned_data
        return data.get("confirm_points") is not None and data.get("confirm_points") == data.get("points")


class PointsTransferForm(IdempotentForm):
    to_member = forms.CharField(
        label="To member",
        max_length=255,
        help_text="The receiving member's id, external id or email, in the same program "
        "(#123 means member id 123 only).",
    )
    points = forms.IntegerField(min_value=1, help_text="Available points to move; they keep their expiry dates.")
    reason = forms.CharField(
        max_length=255,
        help_text="Required; shown in both members' histories.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def __init__(self, *args, member: Member, **kwargs) -> None:
        self.member = member
        super().__init__(*args, **kwargs)

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A transfer needs a reason.")
        return reason

    def clean_to_member(self) -> Member:
        """Resolve the receiver within the sender's program by exact, indexed look-ups."""
        term = self.cleaned_data["to_member"].strip()
        members = Member.objects.filter(program_id=self.member.program_id)
        if term.startswith("#") and term[1:].isdigit() and int(term[1:]) < 2**63:
            found = list(members.filter(pk=int(term[1:])))
        elif "@" in term:
            found = list(members.filter(email=term.lower())[:2])
        else:
            match = Q(external_id=term)
            if term.isdigit() and int(term) < 2**63:
                match |= Q(pk=int(term))
            found = list(members.filter(match)[:2])
        if not found:
            raise forms.ValidationError(f"No member {term!r} in {self.member.program}.")
        if len(found) > 1:
            raise forms.ValidationError("Several members match; give the member id as #<id>.")
        if found[0].pk == self.member.pk:
            raise forms.ValidationError("Choose another member than the sender.")
        return found[0]
