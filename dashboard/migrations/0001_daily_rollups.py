"""The daily roll-up tables, the indexes their set-based queries read on the ledger's and the
other apps' tables (docs/dashboard.md, "Indexes"), and the beat entry of `rollup_stats`.

The indexes belong to the dashboard, which alone needs them: BRIN indexes (a few pages for
millions of rows, cheap to keep on append-only tables) on the moments the roll-ups group by, a
partial b-tree on late-released lots, and two member indexes (enrolments by day, the members at
risk by balance).
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = [
    ("dashboard_entry_created_brin", "loyalty_ledgerentry USING brin (created_at)"),
    (
        "dashboard_entry_released_late",
        "loyalty_ledgerentry (released_at) WHERE points > 0 AND released_at > created_at",
    ),
    ("dashboard_alloc_created_brin", "loyalty_allocation USING brin (created_at)"),
    ("dashboard_activity_occurred_brin", "loyalty_activity USING brin (occurred_at)"),
    ("dashboard_member_enrolled", "loyalty_member (program_id, enrolled_at)"),
    ("dashboard_member_balance", "loyalty_member (program_id, available DESC) WHERE available > 0"),
    ("dashboard_tierchange_at_brin", "tiers_tierchange USING brin (at)"),
    ("dashboard_award_occurred_brin", "workflows_ruleaward USING brin (occurred_at)"),
]

BEAT_NAME = "Roll up the dashboard's figures"
BEAT_TASK = "dashboard.rollup_stats"


def create_beat(apps, schema_editor):
    """Every hour at :40 UTC: each program's day is rolled up within the hour after its local
    midnight, whatever its time zone; runs with nothing to do cost one query per program."""
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute="40", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.update_or_create(name=BEAT_NAME, defaults={"task": BEAT_TASK, "crontab": schedule})


def remove_beat(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=BEAT_NAME).delete()



class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('loyalty', '0015_program_terms'),
        ('tiers', '0002_beat_schedule'),
        ('rewards', '0005_redemption_reward_issued_index'),
        ('workflows', '0006_earningrule_customer_text'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.CreateModel(
            name='DailyBreakdown',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('dimension', models.CharField(choices=[('channel', 'Enrolments by channel'), ('reward', 'Redemptions by reward'), ('tier', 'Members per tier'), ('tier_move', 'Tier moves'), ('rule', 'Awards by earning rule')], max_length=10)),
                ('key', models.CharField(help_text="Channel or move kind, or the reward's, tier's or rule's id.", max_length=40)),
                ('count', models.BigIntegerField(default=0)),
                ('points', models.BigIntegerField(default=0)),
                ('program', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='loyalty.program')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('program', 'dimension', 'day', 'key'), name='dailybreakdown_unique')],
            },
        ),
        migrations.CreateModel(
            name='DailyStat',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('enrolments', models.IntegerField(default=0)),
                ('members', models.IntegerField(default=0, help_text="Members enrolled by the day's end.")),
                ('active_30', models.IntegerField(default=0, help_text='Members with an activity in the 30 days up to this day.')),
                ('active_90', models.IntegerField(default=0, help_text='Members with an activity in the 90 days up to this day.')),
                ('earned', models.BigIntegerField(default=0)),
                ('redeemed', models.BigIntegerField(default=0)),
                ('expired', models.BigIntegerField(default=0)),
                ('adjusted_up', models.BigIntegerField(default=0)),
                ('adjusted_down', models.BigIntegerField(default=0)),
                ('reversed', models.BigIntegerField(default=0, help_text='Points taken back by refunds.')),
                ('restored', models.BigIntegerField(default=0, help_text='Points given back by cancelled redemptions.')),
                ('transferred', models.BigIntegerField(default=0, help_text='Points moved between members.')),
                ('available', models.BigIntegerField(default=0)),
                ('pending', models.BigIntegerField(default=0)),
                ('debt', models.BigIntegerField(default=0)),
                ('redemptions', models.IntegerField(default=0)),
                ('purchases', models.IntegerField(default=0)),
                ('revenue', models.DecimalField(decimal_places=2, default=0, max_digits=18)),
                ('computed_at', models.DateTimeField()),
                ('program', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='loyalty.program')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('program', 'day'), name='dailystat_unique_day')],
            },
        ),
        *[
            migrations.RunSQL(f"CREATE INDEX IF NOT EXISTS {name} ON {target}", f"DROP INDEX IF EXISTS {name}")
            for name, target in INDEXES
        ],
        migrations.RunPython(create_beat, remove_beat),
    ]
