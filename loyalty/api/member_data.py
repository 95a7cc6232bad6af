"""What the API shows of a member, and to which key (docs/api.md, "Keys and scopes").

Guarantees: member data (balances, profile, cards) appears in an answer only when the key has
the `read` scope. Write operations answer with it by default; for a key without `read`, the
fields an output serializer lists in `read_scope_fields` are left out of the answer (and are
not `required` in the OpenAPI schema). A serializer of this module needs the request in its
context: without one it shows no member data at all (fail closed).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers

from .auth import key_can_read


class ReadScopedSerializer(serializers.Serializer):
    """An output serializer whose `read_scope_fields` are shown only to a key with `read`.
    Build it with `context={"request": request}` (`ProgramApi.serializer_context()`)."""

    read_scope_fields: ClassVar[tuple[str, ...]] = ()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in self.read_scope_fields:
            fields[name].required = False  # the schema: absent for a key without `read`
        return fields

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if self.read_scope_fields and not self.shows_member_data():
            for name in self.read_scope_fields:
                data.pop(name, None)
        return data

    def shows_member_data(self) -> bool:
        request = self.context.get("request")
        return request is not None and key_can_read(request)


# A member's cached balances; nest it with `source="*"` on a member, and list the field in
# the parent's `read_scope_fields`.
class BalanceSerializer(serializers.Serializer):
    """The member's points (integers). Shown only to a key with the `read` scope."""

    available = serializers.IntegerField(help_text="Spendable now (negative while the member owes points).")
    pending = serializers.IntegerField(help_text="Earned, still in the return window.")
    lifetime_earned = serializers.IntegerField()
    redeemed = serializers.IntegerField()
    expired = serializers.IntegerField()
