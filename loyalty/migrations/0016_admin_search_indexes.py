"""Indexes of the staff change lists (docs/back-office.md, "Finding your way"; docs/performance.md,
"Staff change lists"):

- the member search by part of an email or a name: pg_trgm and a trigram GIN index per searched
  column, on the expression Django's `icontains` compares (`UPPER(col::text)`); the SQL is
  written out because Django 5.2 wraps an `OpClass` expression in parentheses PostgreSQL refuses;
- the ledger's "by kind" filter: (kind, id DESC) for every kind but the earns.

Built concurrently (no lock on the tables' writes while a large table is indexed), so the
migration is not atomic."""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models

COLUMNS = ("email", "first_name", "last_name")


def trigram_index(column):
    return django.contrib.postgres.indexes.GinIndex(
        django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper(column), name="gin_trgm_ops"),
        name=f"member_{column}_trgm",
    )


def create_sql(column):
    return (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS member_{column}_trgm "
        f'ON loyalty_member USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("loyalty", "0015_program_terms"),
    ]

    operations = [
        TrigramExtension(),
        *[
            migrations.SeparateDatabaseAndState(
                database_operations=[
                    migrations.RunSQL(create_sql(column), f"DROP INDEX CONCURRENTLY IF EXISTS member_{column}_trgm")
                ],
                state_operations=[migrations.AddIndex(model_name="member", index=trigram_index(column))],
            )
            for column in COLUMNS
        ],
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(fields=["kind", "-id"], name="entry_kind_recent", condition=~models.Q(("kind", "earn"))),
        ),
    ]
