"""The activities' own idempotency table (`ActivityKey`) folds into the one idempotency store
(`loyalty.IdempotencyRecord`), then goes.

Each activity key becomes a record `activity:<key>` (a key longer than 246 characters:
`activity:sha256:<hex>`, as `loyalty.services.idempotency_key_namespaced` spells it) with
operation `activity`, the same request hash (so a retry of a request made before the
migration is still replayed), the member, the activity's earn entries and
`{"activity_id": ...}`. The `activity:` namespace keeps these keys apart from the ledger's raw
keys and the HTTP layer's `http:` keys, so the same key in both stores today does not clash.
A record already holding `activity:<key>` (only if a client sent such a raw key to a ledger
endpoint) is kept, and that activity key is not copied: the migration reports how many.

Reversible: going back recreates the table from the `activity:` records whose key was not
hashed.
"""

import hashlib

from django.db import migrations

PREFIX = "activity:"


def _store_key(key):
    if len(key) <= 255 - len(PREFIX):
        return PREFIX + key
    return PREFIX + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def forward(apps, schema_editor):
    ActivityKey = apps.get_model("workflows", "ActivityKey")
    IdempotencyRecord = apps.get_model("loyalty", "IdempotencyRecord")
    LedgerEntry = apps.get_model("loyalty", "LedgerEntry")
    skipped = 0
    batch = []
    keys = ActivityKey.objects.select_related("activity").order_by("pk").iterator(chunk_size=2000)
    for row in keys:
        entry_ids = list(
            LedgerEntry.objects.filter(activity_id=row.activity_id, kind="earn")
            .order_by("id")
            .values_list("id", flat=True)
        )
        batch.append(
            IdempotencyRecord(
                program_id=row.program_id,
                key=_store_key(row.key),
                operation="activity",
                request_hash=row.request_hash,
                member_id=row.activity.member_id,
                entry_ids=entry_ids,
                result={"activity_id": row.activity_id},
                created_at=row.activity.reported_at,
            )
        )
        if len(batch) >= 2000:
            skipped += _write(IdempotencyRecord, batch)
            batch = []
    skipped += _write(IdempotencyRecord, batch)
    if skipped:
        print(f"\n  {skipped} activity keys already present in the idempotency store were left as they were.")


def _write(IdempotencyRecord, batch):
    if not batch:
        return 0
    existing = set(IdempotencyRecord.objects.filter(key__in=[r.key for r in batch]).values_list("program_id", "key"))
    fresh = [r for r in batch if (r.program_id, r.key) not in existing]
    IdempotencyRecord.objects.bulk_create(fresh, ignore_conflicts=True)
    return len(batch) - len(fresh)


def backward(apps, schema_editor):
    ActivityKey = apps.get_model("workflows", "ActivityKey")
    IdempotencyRecord = apps.get_model("loyalty", "IdempotencyRecord")
    records = IdempotencyRecord.objects.filter(operation="activity", key__startswith=PREFIX).exclude(
        key__startswith=PREFIX + "sha256:"
    )
    ActivityKey.objects.bulk_create(
        [
            ActivityKey(
                program_id=r.program_id,
                key=r.key[len(PREFIX) :],
                request_hash=r.request_hash,
                activity_id=r.result["activity_id"],
            )
            for r in records.iterator()
            if "activity_id" in r.result
        ],
        ignore_conflicts=True,
    )
    records.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0009_member_birthday_index"),
        ("workflows", "0003_beat_schedules"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
        migrations.DeleteModel(name="ActivityKey"),
    ]
