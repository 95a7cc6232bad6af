"""The forms of the member page's actions (dashboard/views_member.py). They parse input; the
writes are the apps' services."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings

from loyalty.forms import IdempotentForm, PointsAdjustForm
from loyalty.models import Member

__all__ = [
    "BlockForm",
    "CouponCancelForm",
    "CouponUseForm",
    "NoteForm",
    "PointsAdjustForm",
    "RedeemForm",
    "RefundForm",
    "RejectForm",
    "TransferForm",
]

REASON = {"max_length": 255, "widget": forms.TextInput(attrs={"size": 40})}


def _reason(form: forms.Form, what: str) -> str:
    reason = (form.cleaned_data.get("reason") or "").strip()
    if not reason:
        raise forms.ValidationError(f"{what} needs a reason.")
    return reason


class TransferForm(IdempotentForm):
    """The receiver is picked in the search results (a member id among those the staff user
    may see, in the sender's program)."""

    to_member = forms.ModelChoiceField(
        queryset=Member.objects.none(),
        label="To member",
        error_messages={"invalid_choice": "Pick the receiving member in the search results."},
    )
    points = forms.IntegerField(min_value=1, max_value=settings.LOYALTY_MAX_POINTS_PER_POST)
    reason = forms.CharField(**REASON)

    def __init__(self, *args: Any, member: Member, candidates: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to_member"].queryset = candidates.filter(program_id=member.program_id).exclude(pk=member.pk)

    def clean_reason(self) -> str:
        return _reason(self, "A transfer")


class BlockForm(forms.Form):
    reason = forms.CharField(**REASON)

    def clean_reason(self) -> str:
        return _reason(self, "Blocking a member")


class RedeemForm(IdempotentForm):
    reward = forms.ModelChoiceField(queryset=None, empty_label="Choose a reward")  # type: ignore[arg-type]
    points = forms.IntegerField(
        required=False, min_value=1, help_text="Only for points as money off: how many points to spend."
    )

    def __init__(self, *args: Any, member: Member, **kwargs: Any) -> None:
        from rewards.models import Reward

        super().__init__(*args, **kwargs)
        self.fields["reward"].queryset = Reward.objects.filter(program_id=member.program_id, is_active=True).order_by(
            "position", "id"
        )


class RefundForm(IdempotentForm):
    order_id = forms.CharField(max_length=255, widget=forms.HiddenInput)
    amount = forms.DecimalField(min_value=Decimal("0.01"), max_digits=14, decimal_places=2)
    reason = forms.CharField(**REASON)

    def clean_reason(self) -> str:
        return _reason(self, "A refund")


class CouponUseForm(forms.Form):
    coupon = forms.IntegerField(widget=forms.HiddenInput)
    order_id = forms.CharField(max_length=255, label="Order id")


class CouponCancelForm(forms.Form):
    coupon = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(required=False, **REASON)


class NoteForm(forms.Form):
    text = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3, "cols": 50}))

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].strip()
        if not text:
            raise forms.ValidationError("Write the note.")
        return text


class RejectForm(forms.Form):
    reason = forms.CharField(**REASON)

    def clean_reason(self) -> str:
        return _reason(self, "A rejection")
