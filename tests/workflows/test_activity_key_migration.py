"""The data migration that folds the activities' own idempotency table into the one store."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("workflows", "0003_beat_schedules"), ("loyalty", "0009_member_birthday_index")]
AFTER = [("workflows", "0004_activity_keys_into_idempotency_store")]


@pytest.fixture
def old_apps(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor.loader.project_state(BEFORE).apps
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_activity_keys_become_records_of_the_one_store_and_a_retry_still_replays(old_apps):
    Program = old_apps.get_model("loyalty", "Program")
    Member = old_apps.get_model("loyalty", "Member")
    Activity = old_apps.get_model("loyalty", "Activity")
    ActivityKey = old_apps.get_model("workflows", "ActivityKey")
    IdempotencyRecord = old_apps.get_model("loyalty", "IdempotencyRecord")
    now = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
    program = Program.objects.create(name="P", slug="p", currency="EUR", timezone="UTC")
    member = Member.objects.create(program=program, external_id="c-1", enrolled_at=now)
    activity = Activity.objects.create(program=program, member=member, type="store_visit", occurred_at=now)
    ActivityKey.objects.create(program=program, key="visit-1", request_hash="h" * 64, activity=activity)
    long_key = "x" * 250
    other = Activity.objects.create(program=program, member=member, type="store_visit", occurred_at=now)
    ActivityKey.objects.create(program=program, key=long_key, request_hash="g" * 64, activity=other)
    # The same key in the ledger's store already: no clash, the activity key gets its namespace.
    IdempotencyRecord.objects.create(
        program=program, key="visit-1", operation="earn", request_hash="e" * 64, entry_ids=[], result={}, created_at=now
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new_apps = executor.loader.project_state(AFTER).apps
    Record = new_apps.get_model("loyalty", "IdempotencyRecord")

    record = Record.objects.get(program_id=program.pk, key="activity:visit-1")
    assert record.operation == "activity"
    assert record.request_hash == "h" * 64
    assert record.result == {"activity_id": activity.pk}
    assert record.member_id == member.pk
    hashed = Record.objects.get(program_id=program.pk, key__startswith="activity:sha256:")
    assert hashed.result == {"activity_id": other.pk}
    assert Record.objects.get(program_id=program.pk, key="visit-1").operation == "earn"
    assert "workflows_activitykey" not in connection.introspection.table_names()
