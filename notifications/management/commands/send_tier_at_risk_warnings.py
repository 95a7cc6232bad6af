from notifications import email_schedules

from ._schedule import ScheduleCommand


class Command(ScheduleCommand):
    help = (
        "Queue tier-at-risk warnings to members whose tier the nightly evaluation would lower "
        "within the program's tier_at_risk_days. Idempotent."
    )
    job = staticmethod(email_schedules.tier_at_risk_send)
