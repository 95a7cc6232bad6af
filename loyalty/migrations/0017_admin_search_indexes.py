"""Indexes of the staff change lists (docs/back-office.md, "Finding your way"; docs/performance.md,
"Staff change lists"):

- the member search by part of an email or a name: pg_trgm and a trigram GIN index per searched
  column, on the expression Django's `icontains` compares (`UPPER(col::text)`); the SQL is
  written out because Django 5.2 wraps an `OpClass` expression in parentheses PostgreSQL refuses,
  and skipped where PostgreSQL has no pg_trgm (the embedded server of `make run`);
- the ledger's "by kind" filter: (kind, id DESC) for every kind but the earns.

Built concurrently (no lock on the tables' writes while a large table is indexed), so the
migration is not atomic."""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
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


def create_trigram_indexes(apps, schema_editor):
    """pg_trgm ships with PostgreSQL's contrib package (Debian's postgresql, every managed
    service) but not with the embedded server of `make run` (pgserver): there the search works
    the same, without the indexes (a development database is small)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        if cursor.fetchone() is None:
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in COLUMNS:
            cursor.execute(create_sql(column))


def drop_trigram_indexes(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for column in COLUMNS:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS member_{column}_trgm")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("loyalty", "0016_program_widget_secret_origins"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_trigram_indexes, drop_trigram_indexes, atomic=False)],
            state_operations=[
                migrations.AddIndex(model_name="member", index=trigram_index(column)) for column in COLUMNS
            ],
        ),
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(fields=["kind", "-id"], name="entry_kind_recent", condition=~models.Q(("kind", "earn"))),
        ),
    ]
