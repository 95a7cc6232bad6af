"""The per-key rate limit: requests are counted per API key (not per address: a fleet of tills
shares one), in Django's default cache, at `DEFAULT_THROTTLE_RATES[view.throttle_scope or
"api_key"]`. Over the limit: 429 with `Retry-After` (whole seconds, at least 1). Requests
without a valid key are refused before they are counted."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from loyalty.models import ProgramAPIKey


class APIKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (not per IP: a POS fleet shares one address). The rate is
    `DEFAULT_THROTTLE_RATES[view.throttle_scope or "api_key"]`, read per request, so settings
    overrides apply at once (DRF's throttles bind the rates at import). Requests without a
    valid key are never counted (they are refused before)."""

    default_scope = "api_key"

    def __init__(self) -> None:  # the rate depends on the view: resolved in allow_request
        pass

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, "throttle_scope", None) or self.default_scope
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope not in rates:
            raise ImproperlyConfigured(f"No throttle rate set for the {self.scope!r} scope.")
        return rates[self.scope]

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ProgramAPIKey):
            return None
        return f"throttle_{self.scope}_{request.auth.prefix}"

    def wait(self) -> float | None:
        wait = super().wait()
        return None if wait is None else max(1, math.ceil(wait))
