"""The variables of a member email, as plain data (docs/emails.md, `email_kinds.VARIABLES`).

`message_context` builds them when a message is sent: the member and the program as they are
then, the links, and the event's facts stored on the outbox row (`EmailMessage.data`). Dates
stored as ISO strings (keys ending in `_on`, `valid_until`) come back as dates so that the
`date` filter formats them in the message's language. Nothing here is a model instance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from loyalty.models import Member, Program

from . import email_kinds

DATE_KEYS_SUFFIXES = ("_on", "valid_until")

# Per kind, a function that adds facts to the context at send time from `data` (e.g. an
# activity's order id from its id). Registered by the modules that queue that kind.
ENRICHERS: dict[str, Callable[[dict[str, Any], Program, Member | None], dict[str, Any]]] = {}


def enricher(kind: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def register(func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        ENRICHERS[kind] = func
        return func

    return register


def _dates(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _dates(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v, key) for v in value]
    if isinstance(value, str) and key.endswith(DATE_KEYS_SUFFIXES):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return value
    return value


def member_data(member: Member | None, *, tier_name: str = "") -> dict[str, Any]:
    if member is None:
        return dict.fromkeys(email_kinds.MEMBER_FIELDS, "")
    name = " ".join(part for part in (member.first_name, member.last_name) if part)
    return {
        "first_name": member.first_name,
        "last_name": member.last_name,
        "name": name,
        "email": member.email,
        "referral_code": member.referral_code,
        "available": member.available,
        "pending": member.pending,
        "lifetime_earned": member.lifetime_earned,
        "redeemed": member.redeemed,
        "tier": tier_name,
    }


def program_data(program: Program, *, admin_email: str = "") -> dict[str, Any]:
    return {
        "name": program.name,
        "points_name": program.points_name,
        "currency": program.currency,
        "brand_color": program.brand_color,
        "logo_url": program.logo_url,
        "admin_email": admin_email,
    }


def message_context(
    *,
    kind: str,
    program: Program,
    member: Member | None,
    data: dict[str, Any],
    links: dict[str, str],
    admin_email: str = "",
    tier_name: str = "",
) -> dict[str, Any]:
    """The whole context of one message: common variables, then the kind's facts."""
    facts = dict(data)
    enrich = ENRICHERS.get(kind)
    if enrich is not None:
        facts = enrich(facts, program, member)
    context = {
        "member": member_data(member, tier_name=tier_name),
        "program": program_data(program, admin_email=admin_email),
        "links": links,
    }
    offered = email_kinds.VARIABLES.get(kind, {})
    for name in offered:
        if name in facts:
            context[name] = _dates(facts[name], name)
    return context
