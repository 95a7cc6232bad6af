"""Insert a model instance in one statement, without a savepoint, unless it would break a
unique constraint: `INSERT ... ON CONFLICT DO NOTHING`. For hot paths where a duplicate is an
expected refusal (an order reported twice, a coupon code drawn twice): the refusal writes
nothing and leaves the caller's transaction usable, at the cost of one statement."""

from __future__ import annotations

from functools import cache

from django.db import connection
from django.db.models import Model


@cache
def _insert_sql(model: type[Model]) -> tuple[str, list]:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(f.column for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING RETURNING id"
    )
    return sql, fields


def insert_unless_conflict(obj: Model) -> bool:
    """Insert `obj` (its pk is set) unless any unique constraint refuses it; whether it was
    inserted. Field defaults and `pre_save` (auto_now ...) apply as in `save()`; signals don't."""
    sql, fields = _insert_sql(type(obj))
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = connection.alias
    return True
