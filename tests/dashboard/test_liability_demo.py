"""The demo (`load_demo`) shows the finance reports with realistic figures: a point value, an
expected redemption rate, a liability that reconciles, breakage and deferred revenue."""

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from dashboard import liability
from loyalty.models import Program
from loyalty.selectors import ledger_problems


@pytest.mark.slow
def test_the_demo_program_has_finance_figures(db):
    call_command("load_demo", members=25, stdout=io.StringIO())
    program = Program.objects.get(slug="demo")
    assert (program.point_value, program.expected_redemption_rate) == (Decimal("0.01"), Decimal("0.85"))
    now = timezone.now()
    today = program.local_date(now)
    start = today - dt.timedelta(days=400)

    report = liability.liability_report([program], start, today, now=now)
    (eur,) = report.currencies
    assert report.differences == []
    assert eur.aging.held > 0
    assert eur.value > 0
    (breakage,) = liability.breakage_report([program], start, today, now=now)
    assert any(row.expired for row in breakage.programs[0].rows)
    (deferred,) = liability.deferred_revenue_report([program], start, today, now=now)
    assert deferred.total("revenue") > 0
    assert deferred.total("closing_liability") > 0
    assert list(ledger_problems()) == []
