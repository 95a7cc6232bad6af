"""The scheduled member emails (docs/emails.md, "Scheduled emails"): the record of a reminder
period done per program, the index that finds a member's latest expiry warning, and the beat
entries (editable in the admin under Periodic tasks). Each job is idempotent and works in each
program's time zone, so a late or repeated run is harmless: daily at 08:00 UTC (the expiry
warnings and the tier check), the statements at 08:10 UTC (each program's period is sent by the
first run in it)."""

import django.db.models.deletion
from django.db import migrations, models

SCHEDULES = [
    ("Send expiry warnings", "notifications.send_expiry_warnings", "0"),
    ("Send point reminders", "notifications.send_point_reminders", "10"),
    ("Send tier-at-risk warnings", "notifications.send_tier_at_risk_warnings", "20"),
]


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute in SCHEDULES:
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour="8",
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone="UTC",
        )
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "crontab": schedule})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0012_program_branding_member_language"),
        ("notifications", "0003_member_emails"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="EmailScheduleRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("job", models.CharField(max_length=40)),
                ("period", models.CharField(max_length=20)),
                ("finished_at", models.DateTimeField()),
                ("queued", models.PositiveIntegerField(default=0, help_text="Messages queued by the run.")),
                (
                    "program",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="loyalty.program"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("program", "job", "period"), name="email_schedule_run_once")
                ],
            },
        ),
        migrations.AddIndex(
            model_name="emailmessage",
            index=models.Index(
                condition=models.Q(("kind", "points_expiring")),
                fields=["member", "source"],
                name="email_message_expiring",
            ),
        ),
        migrations.RunPython(create, remove),
    ]
