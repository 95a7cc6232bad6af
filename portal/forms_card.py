"""The form of the portal's card pages (issue 12: claim a card)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class ClaimForm(forms.Form):
    number = forms.CharField(
        label=_("Card number"),
        max_length=48,  # 32 digits and the spaces or dashes people type between groups
        help_text=_("The digits under the barcode on your card (spaces are fine)."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "autofocus": True}),
    )
    pin = forms.CharField(
        label=_("PIN"),
        max_length=12,
        help_text=_("The 6-digit code printed on the back of the card."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )
