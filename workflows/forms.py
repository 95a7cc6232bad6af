from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.postgres.forms import SimpleArrayField

from loyalty.models import Activity, Member, Program

from .models import BudgetPeriod, EarningRule, Weekday, validate_activity_type


def budget_period_or_month(form: forms.ModelForm) -> str:
    """A budget's period left empty (an older form, a program file without it) is a month."""
    return form.cleaned_data.get("budget_period") or BudgetPeriod.MONTH


class EarningRuleForm(forms.ModelForm):
    """The admin's rule form: days as check boxes, category and SKU lists comma-separated."""

    days_of_week = forms.TypedMultipleChoiceField(
        choices=Weekday.choices,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only on these days (program time zone); none ticked = every day.",
    )
    include_categories = SimpleArrayField(forms.CharField(max_length=100), required=False, help_text="Comma-separated.")
    exclude_categories = SimpleArrayField(forms.CharField(max_length=100), required=False, help_text="Comma-separated.")
    include_skus = SimpleArrayField(forms.CharField(max_length=100), required=False, help_text="Comma-separated.")
    exclude_skus = SimpleArrayField(forms.CharField(max_length=100), required=False, help_text="Comma-separated.")

    class Meta:
        model = EarningRule
        fields = (
            "program",
            "name",
            "trigger",
            "is_active",
            "kind",
            "points",
            "multiplier",
            "customer_text",
            "min_amount",
            "channel",
            "tiers",
            "include_categories",
            "exclude_categories",
            "include_skus",
            "exclude_skus",
            "starts_at",
            "ends_at",
            "days_of_week",
            "cap_per_order",
            "cap_per_day",
            "cap_per_week",
            "cap_per_month",
            "cap_lifetime",
            "budget_total",
            "budget_per_period",
            "budget_period",
            "priority",
            "stackable",
        )
        widgets = {"tiers": forms.CheckboxSelectMultiple}

    def clean_budget_period(self) -> str:
        return budget_period_or_month(self)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        program, tiers = data.get("program"), data.get("tiers")
        if program and tiers and any(t.program_id != program.id for t in tiers):
            self.add_error("tiers", "Choose tiers of this rule's program.")
        return data


class ActivityPreviewForm(forms.Form):
    """The admin's "Preview an order": a member, an activity, and its items one per line."""

    program = forms.ModelChoiceField(queryset=Program.objects.all())
    member = forms.CharField(max_length=255, help_text="Member id, or the shop's customer id (external id).")
    type = forms.CharField(max_length=40, initial="purchase", validators=[validate_activity_type])
    occurred_at = forms.DateTimeField(required=False, help_text="Empty: now.")
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)
    channel = forms.ChoiceField(choices=[("", "Any"), *Activity.Channel.choices], required=False)
    items = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "cols": 60}),
        required=False,
        help_text="One item per line: sku, category, quantity, unit price.",
    )

    def clean_items(self) -> list[dict[str, Any]]:
        parsed = []
        for number, line in enumerate(self.cleaned_data["items"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            try:
                sku, category, quantity, price = parts
                parsed.append(
                    {"sku": sku, "category": category, "quantity": int(quantity), "unit_price": Decimal(price)}
                )
            except (ValueError, ArithmeticError) as exc:
                raise forms.ValidationError(f"Line {number}: expected sku, category, quantity, unit price.") from exc
        return parsed

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        program, reference = data.get("program"), data.get("member")
        if program and reference:
            members = Member.objects.filter(program=program)
            member = members.filter(external_id=reference).first()
            if member is None and reference.isdigit():
                member = members.filter(pk=int(reference)).first()
            if member is None:
                self.add_error("member", "No member of this program has this id or external id.")
            data["member_obj"] = member
        return data
