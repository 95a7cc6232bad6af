"""Answers built as plain dicts on the hot paths (docs/performance.md, issue 10's "Speed").

A DRF serializer builds its fields afresh for every answer (a deep copy of each declared field)
and walks them generically; on `POST /activities` and `POST /redemptions` that cost about as
much CPU as the ledger posting. The hot endpoints therefore build their answer with these
helpers; their serializers stay the contract (the OpenAPI schema, docs/api.md), and a test
compares each builder with its serializer field by field (tests/api/test_output.py). The
values go through the same DRF field classes (one shared, unbound instance each: they keep no
state between calls), so dates, decimals and choices render exactly as the serializers do.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from loyalty.services import Balance

_DATETIME = serializers.DateTimeField()


def datetime_data(value: dt.datetime | None) -> str | None:
    """A moment as `serializers.DateTimeField()` renders it (None stays None)."""
    return None if value is None else _DATETIME.to_representation(value)


def decimal_data(field: serializers.DecimalField, value: Decimal | None) -> Any:
    """A decimal as `field` renders it (None stays None)."""
    return None if value is None else field.to_representation(value)


def balance_data(balance: Balance) -> dict[str, int]:
    """`BalanceSerializer`'s answer (loyalty/api/member_data.py)."""
    return {
        "available": int(balance.available),
        "pending": int(balance.pending),
        "lifetime_earned": int(balance.lifetime_earned),
        "redeemed": int(balance.redeemed),
        "expired": int(balance.expired),
    }
