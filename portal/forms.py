"""Forms of the customer portal. Labels and messages are translated (portal/locale)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.models import LANGUAGES

OLDEST_BIRTHDAY = dt.date(1900, 1, 1)


class LoginForm(forms.Form):
    email = forms.EmailField(
        label=_("Your email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )


class JoinForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"), max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    first_name = forms.CharField(
        label=_("First name"), max_length=150, widget=forms.TextInput(attrs={"autocomplete": "given-name"})
    )
    last_name = forms.CharField(
        label=_("Last name"),
        max_length=150,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "family-name"}),
    )
    birthday = forms.DateField(
        label=_("Birthday (optional)"),
        required=False,
        help_text=_("We use it for your birthday treat."),
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d"],
    )
    language = forms.ChoiceField(label=_("Language of our emails"), choices=LANGUAGES)
    email_consent = forms.BooleanField(
        label=_("Send me offers and news by email"),
        required=False,
        help_text=_("You can stop them at any time."),
    )
    referral_code = forms.CharField(
        label=_("Referral code (optional)"),
        max_length=16,
        required=False,
        help_text=_("The code of the friend who invited you."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )

    def clean_birthday(self) -> dt.date | None:
        value = self.cleaned_data.get("birthday")
        if value is not None and not (OLDEST_BIRTHDAY <= value <= timezone.localdate()):
            raise forms.ValidationError(_("Enter a date between 1900 and today."))
        return value

    def clean_referral_code(self) -> str:
        return (self.cleaned_data.get("referral_code") or "").strip().upper()


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=LANGUAGES)
    next = forms.CharField(required=False, max_length=500)


# prefs
class PreferencesForm(forms.Form):
    """The portal's preferences: the optional email kinds (their choices and labels come from
    `notifications.emails.preference_kinds` and `page_words`, passed by the view), the consent
    to offers, and the language of emails."""

    kinds = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    email_consent = forms.BooleanField(label=_("Send me offers and news by email"), required=False)
    language = forms.ChoiceField(label=_("Language of our emails and pages"), choices=LANGUAGES)

    def __init__(self, *args: object, kinds: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kinds"].choices = kinds
