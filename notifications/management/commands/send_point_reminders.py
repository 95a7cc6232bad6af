from notifications import email_schedules

from ._schedule import ScheduleCommand


class Command(ScheduleCommand):
    help = (
        "Queue the periodic points statement (monthly or quarterly per program) to members with a balance and consent. "
        "Once per period; idempotent."
    )
    job = staticmethod(email_schedules.point_reminders_send)
