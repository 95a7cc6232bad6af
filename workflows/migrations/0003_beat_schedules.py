"""Beat entries (editable in the admin under Periodic tasks): birthday bonuses at 00:15 UTC
and the daily automations at 03:00 UTC. Both runs are idempotent, so a late or repeated run is
harmless; the birthday job looks back a few days, so a missed night is caught up."""

from django.db import migrations

ENTRIES = (
    ("Award birthday bonuses", "workflows.award_birthdays", "15", "0"),
    ("Run daily automations", "workflows.run_workflows", "0", "3"),
)


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute, hour in ENTRIES:
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "crontab": schedule})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[e[0] for e in ENTRIES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0002_referrals_automations"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
