"""Forms of the notifications app (admin)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from . import services
from .models import EventType, WebhookEndpoint


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="https only; must not resolve to a private address."
    )
    events = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="The events sent to this URL.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["program", "url", "description", "events", "is_active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["events"] = list(self.instance.events)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            services.endpoint_url_validate(url)
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc
        return url
