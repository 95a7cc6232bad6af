"""Amounts as the portal's pages write them, in the active language."""

from __future__ import annotations

from django.utils import formats
from django.utils.translation import gettext as _

from loyalty.models import Program


def money(program: Program, amount: object) -> str:
    return _("%(amount)s %(currency)s") % {
        "amount": formats.number_format(amount, 2, force_grouping=True),
        "currency": program.currency,
    }


def points_text(program: Program, count: int) -> str:
    return f"{formats.number_format(count, force_grouping=True)} {program.points_name}"
