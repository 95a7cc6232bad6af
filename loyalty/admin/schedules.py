"""The scheduled jobs (django-celery-beat's periodic tasks) as a manager reads them: what each
job does, and when, in words ("every day at 03:00, UTC") and, for the jobs that work program by
program, at what local time that is in each program's time zone ("04:00 in Europe/Paris").

The beat's raw schedule tables (crontabs, intervals, solar events, clocked times) stay in the
Technical group of the navigation (config/admin_site.py).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.contrib import admin
from django.utils import timezone
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from ..models import Program

# What each job of the project does, in a manager's words. The jobs marked per program look at
# each program in its own time zone: their local run times are shown per zone.
JOBS: dict[str, tuple[str, bool]] = {
    "loyalty.expire_points": ("Expires points at midnight in each program's time zone.", True),
    "loyalty.release_pending_points": ("Makes pending points available when their wait is over.", False),
    "rewards.expire_coupons": ("Expires unused coupons past their end date.", False),
    "tiers.evaluate_tiers": ("Moves members up or down the tiers.", False),
    "workflows.award_birthdays": ("Gives the birthday bonuses of the day.", True),
    "workflows.run_workflows": ("Runs the daily automations.", True),
    "notifications.send_expiry_warnings": ("Emails members whose points expire soon.", True),
    "notifications.send_point_reminders": ("Emails the periodic points statements.", True),
    "notifications.send_tier_at_risk_warnings": ("Emails members who may lose their tier.", True),
    "notifications.deliver_outbox": ("Sends the queued webhook events and retries the emails due.", False),
    "notifications.collect_expired_points": ("Collects expired points for the emails.", False),
    "dashboard.rollup_stats": ("Computes the dashboard's daily figures.", True),
}

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]
MONTHS += ["November", "December"]


def _days_of_week(field: str) -> str | None:
    """ "1,3" -> "Monday and Wednesday"; None when the field is not a plain list of days."""
    parts = [p for p in field.split(",") if p]
    if not parts or not all(p.isdigit() and int(p) <= 7 for p in parts):
        return None
    names = [DAYS[int(p) % 7] for p in parts]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _times(minute: str, hour: str) -> list[dt.time] | None:
    hours = hour.split(",")
    if not minute.isdigit() or not all(h.isdigit() for h in hours):
        return None
    return [dt.time(int(h), int(minute)) for h in hours]


def crontab_in_words(cron: CrontabSchedule) -> str:
    """A crontab in a sentence; cron-descriptor's text (django-celery-beat) for rare shapes."""
    zone = str(cron.timezone)
    minute, hour, dom, moy, dow = cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week
    if moy == "*" and (dom == "*" or dow == "*"):
        if dom == "*" and dow == "*":
            days = "every day"
        elif dom == "*":
            named = _days_of_week(dow)
            days = f"every {named}" if named else None
        else:
            days = f"on day {dom} of every month" if dom.replace(",", "").isdigit() else None
        times = _times(minute, hour)
        if days and times:
            at = " and ".join(t.strftime("%H:%M") for t in times)
            return f"{days} at {at}, {zone}"
        if days == "every day" and hour == "*":
            if minute.isdigit():
                return f"every hour at {int(minute)} minutes past"
            if minute.startswith("*/") and minute[2:].isdigit():
                return f"every {int(minute[2:])} minutes"
            if minute == "*":
                return "every minute"
    return f"{cron.human_readable}, {zone}"


def schedule_in_words(task: PeriodicTask) -> str:
    if task.crontab_id:
        return crontab_in_words(task.crontab)
    if task.interval_id:
        every, period = task.interval.every, task.interval.period
        unit = period[:-1] if every == 1 else period
        return f"every {unit}" if every == 1 else f"every {every} {unit}"
    if task.clocked_id:
        moment = timezone.localtime(task.clocked.clocked_time)
        return f"once, at {moment:%Y-%m-%d %H:%M} {timezone.get_current_timezone_name()}"
    if task.solar_id:
        return f"at {task.solar.get_event_display().lower()} ({task.solar.latitude}, {task.solar.longitude})"
    return "no schedule"


def local_times(task: PeriodicTask, programs: list[tuple[str, str]], today: dt.date | None = None) -> str:
    """For a per-program job run at fixed times: those times in each program's zone (today's
    offsets), e.g. "04:00 in Europe/Paris (Café Lumière)". Empty when not applicable."""
    if not task.crontab_id or not JOBS.get(task.task, ("", False))[1]:
        return ""
    times = _times(task.crontab.minute, task.crontab.hour)
    if not times:
        return ""
    today = today or timezone.now().date()
    source = zoneinfo.ZoneInfo(str(task.crontab.timezone))
    by_zone: dict[str, list[str]] = {}
    for name, zone in programs:
        by_zone.setdefault(zone, []).append(name)
    parts = []
    for zone, names in sorted(by_zone.items()):
        if zone == source.key:
            continue
        local = [dt.datetime.combine(today, t, tzinfo=source).astimezone(zoneinfo.ZoneInfo(zone)) for t in times]
        shown = " and ".join(
            moment.strftime("%H:%M") + (" the day before" if moment.date() < today else "") for moment in local
        )
        parts.append(f"{shown} in {zone} ({', '.join(sorted(names))})")
    return "; ".join(parts)


if admin.site.is_registered(PeriodicTask):
    admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class ScheduledJobAdmin(BeatPeriodicTaskAdmin):
    """django-celery-beat's periodic tasks, listed as sentences."""

    # The crontab's words under its field, by a script file (the staff CSP refuses inline scripts).
    change_form_template = "admin/django_celery_beat/periodictask/change_form.html"
    list_display = ("name", "what_it_does", "when", "in_program_time", "enabled", "last_run_at")
    list_display_links = ("name",)
    list_filter = ("enabled",)
    list_select_related = ("interval", "crontab", "solar", "clocked")
    date_hierarchy = None
    readonly_fields = (*BeatPeriodicTaskAdmin.readonly_fields, "what_it_does", "when", "in_program_time")
    fieldsets = (
        ("In words", {"fields": ("what_it_does", "when", "in_program_time")}),
        *BeatPeriodicTaskAdmin.fieldsets,
    )

    @admin.display(description="what it does")
    def what_it_does(self, obj: PeriodicTask) -> str:
        return JOBS.get(obj.task, (obj.description or obj.task, False))[0]

    @admin.display(description="when")
    def when(self, obj: PeriodicTask) -> str:
        return schedule_in_words(obj) if obj.pk else "-"

    @admin.display(description="in the programs' time")
    def in_program_time(self, obj: PeriodicTask) -> str:
        if not obj.pk:
            return "-"
        programs = list(Program.objects.order_by("name").values_list("name", "timezone"))  # a handful
        return local_times(obj, programs) or "-"
