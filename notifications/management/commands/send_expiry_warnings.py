from notifications import email_schedules

from ._schedule import ScheduleCommand


class Command(ScheduleCommand):
    help = (
        "Queue the points-expiring warnings (N days before) and last chances (the day before), per program time zone. "
        "Set-based, idempotent."
    )
    job = staticmethod(email_schedules.expiry_warnings_send)
