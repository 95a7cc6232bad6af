"""The expiry scan starts at the ledger's current end (no webhook for expiries of the past),
and the beat entry of `deliver_outbox` (editable in the admin under Periodic tasks): every
minute it sends the deliveries that are due (retries, and first attempts a worker missed).
Idempotent and safe on several workers, so a late or repeated run is harmless."""

from django.db import migrations

NAME = "Deliver webhook outbox"
TASK = "notifications.deliver_outbox"


def create(apps, schema_editor):
    LedgerEntry = apps.get_model("loyalty", "LedgerEntry")
    ExpiryScanCursor = apps.get_model("notifications", "ExpiryScanCursor")
    last = LedgerEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    ExpiryScanCursor.objects.update_or_create(pk=1, defaults={"last_entry_id": last})

    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.update_or_create(name=NAME, defaults={"task": TASK, "interval": schedule})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()
    apps.get_model("notifications", "ExpiryScanCursor").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
