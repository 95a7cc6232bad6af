"""The member reference (docs/api.md, "Naming a member"): a body names a member by exactly one
of `member_id`, `external_id` or `card_number`.

Guarantees: `member_from_reference` finds only a member of the key's program (another
program's member is a 404 `member_not_found`, exactly like an unknown one), in one indexed
query; a malformed reference (none or several of the three, a card number with a wrong check
digit) is a 400 before any look-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from rest_framework import serializers
from stdnum import luhn

from loyalty import errors
from loyalty.models import Member, Program

from .parsing import InputSerializer

MEMBER_REFERENCE_FIELDS = ("member_id", "external_id", "card_number")
_BIGINT_MAX = 2**63 - 1


# docs/api.md's member reference. Subclass it for a flat body, or nest it (`from`, `to`); resolve
# the validated data with `member_from_reference`.
class MemberReferenceSerializer(InputSerializer):
    """A member, named by exactly one of `member_id`, `external_id` (the shop's customer id)
    or `card_number` (an active card of the member)."""

    member_id = serializers.IntegerField(required=False, min_value=1, max_value=_BIGINT_MAX)
    external_id = serializers.CharField(required=False, max_length=255, help_text="The shop's customer id.")
    card_number = serializers.CharField(
        required=False, max_length=40, help_text="A card number of the member (spaces and dashes are ignored)."
    )

    def validate_card_number(self, value: str) -> str:
        number = "".join(ch for ch in value if ch not in " -\t")
        if not (number.isdigit() and 8 <= len(number) <= 32 and luhn.is_valid(number)):
            raise serializers.ValidationError("This is not a valid card number (check the digits).")
        return number

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in MEMBER_REFERENCE_FIELDS if attrs.get(name) is not None]
        if len(given) != 1:
            message = "Give exactly one of member_id, external_id or card_number."
            raise serializers.ValidationError({name: [message] for name in (given or MEMBER_REFERENCE_FIELDS)})
        return attrs


_MEMBER_FIELDS = [f.attname for f in Member._meta.concrete_fields]
_MEMBER_BY = {
    column: f"SELECT {', '.join(_MEMBER_FIELDS)} FROM {Member._meta.db_table} WHERE program_id = %s AND {column} = %s"
    for column in ("id", "external_id")
}


def _member_by(column: str, program: Program, value: Any) -> Member | None:
    """The member of `program` whose unique `column` is `value`, or None. One statement on a
    unique index, without the ORM's query building (most of this look-up's CPU)."""
    with connection.cursor() as cursor:
        cursor.execute(_MEMBER_BY[column], [program.pk, value])
        row = cursor.fetchone()
    return None if row is None else Member.from_db(connection.alias, _MEMBER_FIELDS, row)


def member_from_reference(*, program: Program, reference: Mapping[str, Any]) -> Member:
    """The member of `program` a validated reference names, else `MemberNotFound` (404); a
    member of another program is not found. A card number names its member while the card is
    active (a blocked, void or unassigned card names nobody here; reporting a purchase on an
    unassigned card is the cards app's `member_for_card`). Queries: 1, on an index (pk,
    unique external id, unique card number)."""
    if reference.get("member_id") is not None:
        field, value = "member_id", reference["member_id"]
        member = _member_by("id", program, value)
    elif reference.get("external_id") is not None:
        field, value = "external_id", reference["external_id"]
        member = _member_by("external_id", program, value)
    else:
        field, value = "card_number", reference["card_number"]
        # The reverse relation of cards.Card.member (a lookup, not an import: loyalty stays below cards).
        members: QuerySet[Member] = Member.objects.filter(program=program, cards__number=value, cards__status="active")
        member = members.first()
    if member is None:
        raise errors.MemberNotFound("No member of this program matches the reference.", **{field: value})
    member.program = program
    return member
