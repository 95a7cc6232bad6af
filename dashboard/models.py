"""The dashboard's tables: daily roll-ups per program (docs/dashboard.md).

`rollup_stats` (dashboard.rollups) writes them with set-based SQL; the dashboard reads only
these rows (plus one indexed query for the members at risk), never the ledger.
"""

from django.db import models

from loyalty.models import Program


class DailyStat(models.Model):
    """One program's figures for one local day (the program's time zone).

    Flows count what happened during the day; stocks (`members`, `active_*`, `available`,
    `pending`, `debt`) are the state at the day's end. Points are positive numbers.
    """

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    # Members
    enrolments = models.IntegerField(default=0)
    members = models.IntegerField(default=0, help_text="Members enrolled by the day's end.")
    active_30 = models.IntegerField(default=0, help_text="Members with an activity in the 30 days up to this day.")
    active_90 = models.IntegerField(default=0, help_text="Members with an activity in the 90 days up to this day.")
    # Points that moved during the day
    earned = models.BigIntegerField(default=0)
    redeemed = models.BigIntegerField(default=0)
    expired = models.BigIntegerField(default=0)
    adjusted_up = models.BigIntegerField(default=0)
    adjusted_down = models.BigIntegerField(default=0)
    reversed = models.BigIntegerField(default=0, help_text="Points taken back by refunds.")
    restored = models.BigIntegerField(default=0, help_text="Points given back by cancelled redemptions.")
    transferred = models.BigIntegerField(default=0, help_text="Points moved between members.")
    # Outstanding points at the day's end
    available = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    debt = models.BigIntegerField(default=0)
    # Rewards and purchases
    redemptions = models.IntegerField(default=0)
    purchases = models.IntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["program", "day"], name="dailystat_unique_day")]

    def __str__(self) -> str:
        return f"{self.program_id} {self.day}"


class DailyBreakdown(models.Model):
    """A figure of one program's day split by a dimension: enrolments by channel, redemptions
    by reward, members per tier (at the day's end), tier moves by kind, awards by earning rule."""

    class Dimension(models.TextChoices):
        CHANNEL = "channel", "Enrolments by channel"
        REWARD = "reward", "Redemptions by reward"
        TIER = "tier", "Members per tier"
        TIER_MOVE = "tier_move", "Tier moves"
        RULE = "rule", "Awards by earning rule"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    dimension = models.CharField(max_length=10, choices=Dimension.choices)
    key = models.CharField(max_length=40, help_text="Channel or move kind, or the reward's, tier's or rule's id.")
    count = models.BigIntegerField(default=0)
    points = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["program", "dimension", "day", "key"], name="dailybreakdown_unique")
        ]

    def __str__(self) -> str:
        return f"{self.program_id} {self.day} {self.dimension}:{self.key}"
