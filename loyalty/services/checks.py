"""Input checks shared by the ledger's use cases. Each raises a domain error (loyalty.errors)
before anything is written, so a refused request leaves the database untouched."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from loyalty import errors


def check_points(points: Any, *, allow_negative: bool = False) -> int:
    if isinstance(points, bool) or not isinstance(points, int):
        raise errors.InvalidPoints("Points must be a whole number.", points=points)
    if points == 0:
        raise errors.InvalidPoints("Points must not be zero.", points=points)
    if points < 0 and not allow_negative:
        raise errors.InvalidPoints("Points must be positive.", points=points)
    limit = settings.LOYALTY_MAX_POINTS_PER_POST
    if abs(points) > limit:
        raise errors.InvalidPoints(f"At most {limit} points can be posted at once.", points=points, limit=limit)
    return points


def check_aware(moment: dt.datetime | None, name: str) -> None:
    if moment is not None and timezone.is_naive(moment):
        raise errors.InvalidInput(f"{name} must carry a time zone.", field=name)


def full_clean(obj: Any, **kwargs: Any) -> None:
    """Model validation as a domain error naming the fields (the API's 400 `details`)."""
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        raise errors.InvalidInput("Invalid input.", fields=fields) from exc
