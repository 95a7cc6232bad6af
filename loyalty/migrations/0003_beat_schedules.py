"""Beat entries for the ledger jobs (editable in the admin under Periodic tasks).

Release pending points every 15 minutes; expire points hourly at minute 5 (points expire at
local midnight of each program, and programs may sit in any time zone). Both are idempotent,
so a late or repeated run is harmless.
"""

from django.db import migrations

SCHEDULES = [
    ("Expire points", "loyalty.expire_points", {"minute": "5", "hour": "*"}),
    ("Release pending points", "loyalty.release_pending_points", {"minute": "*/15", "hour": "*"}),
]


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, cron in SCHEDULES:
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=cron["minute"],
            hour=cron["hour"],
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone="UTC",
        )
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "crontab": schedule})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0002_ledger_append_only"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
