"""The finance reports (dashboard.liability, dashboard.views_reports): aging at its
boundaries, currency grouping, breakage and deferred revenue on a known history, the pages'
permission and program scoping, the CSV and PDF exports, and bad input."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from pypdf import PdfReader

from dashboard import liability, views_reports
from loyalty import services
from loyalty.models import Program
from tests.loyalty.factories import MemberFactory, ProgramFactory, PurchaseFactory, StaffFactory

END = dt.date(2026, 3, 31)


def _earn(program, member, points, occurred_day, now):
    occurred = program.start_of_day(occurred_day) + dt.timedelta(hours=12)
    return services.points_earn(program=program, member_id=member.pk, points=points, occurred_at=occurred, now=now)


@pytest.fixture
def accountant(db):
    user = StaffFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_financial_reports"))
    return user


# ---------------------------------------------------------------- aging


def test_aging_buckets_at_their_boundaries(db):
    program = ProgramFactory(expiry_days=400, timezone="Europe/Paris")
    member = MemberFactory(program=program)
    now = liability.end_moment(program, END) - dt.timedelta(hours=1)
    # A lot earned on day X is valid through X + 400 and expires at the next local midnight.
    _earn(program, member, 1, END - dt.timedelta(days=370), now)  # last valid day END + 30: within 30
    _earn(program, member, 10, END - dt.timedelta(days=369), now)  # END + 31: 31-90
    _earn(program, member, 100, END - dt.timedelta(days=310), now)  # END + 90: 31-90
    _earn(program, member, 1000, END - dt.timedelta(days=309), now)  # END + 91: later
    _earn(program, member, 10000, END - dt.timedelta(days=500), now)  # overdue, job not run: within 30
    forever = ProgramFactory(expiry_days=None)
    _earn(forever, MemberFactory(program=forever), 7, END - dt.timedelta(days=3), now)

    ages = liability.aging([program, forever], END, now=now)

    assert ages[program.pk] == liability.Aging(within_30=10001, within_90=110, later=1000, never=0)
    assert ages[forever.pk] == liability.Aging(never=7)
    # The same figures rebuilt from the allocations (the path of a past period).
    assert liability.aging([program, forever], END, now=now, from_history=True) == ages


def test_aging_counts_pending_points_and_debts_apart(db):
    program = ProgramFactory(pending_days=14, expiry_days=None)
    member = MemberFactory(program=program)
    now = liability.end_moment(program, END) - dt.timedelta(hours=1)
    _earn(program, member, 50, END, now)
    debtor = MemberFactory(program=program)
    services.points_adjust(program=program, member_id=debtor.pk, points=-30, reason="typo", source="test", now=now)

    age = liability.aging([program], END, now=now)[program.pk]

    assert (age.never, age.pending, age.debt, age.held, age.net) == (50, 50, 30, 50, 20)


# ---------------------------------------------------------------- the report


def test_programs_are_grouped_by_currency_and_valued_at_their_point_value(db):
    paris = ProgramFactory(name="Paris", currency="EUR", point_value=Decimal("0.01"), expiry_days=None)
    lyon = ProgramFactory(name="Lyon", currency="EUR", point_value=Decimal("0.02"), expiry_days=None)
    london = ProgramFactory(name="London", currency="GBP", point_value=Decimal("0.005"), expiry_days=None)
    now = liability.end_moment(paris, END) - dt.timedelta(hours=1)
    for program, points in ((paris, 1000), (lyon, 500), (london, 3000)):
        _earn(program, MemberFactory(program=program), points, END - dt.timedelta(days=40), now)

    report = liability.liability_report([london, paris, lyon], dt.date(2026, 1, 1), END, now=now)

    assert [c.currency for c in report.currencies] == ["EUR", "GBP"]
    eur, gbp = report.currencies
    assert [p.program.name for p in eur.programs] == ["Lyon", "Paris"]
    assert (eur.aging.held, eur.value) == (1500, Decimal("20.00"))
    assert (gbp.aging.held, gbp.value) == (3000, Decimal("15.00"))
    # Occurred in February, written in March: the roll-forward books an entry when it is written.
    assert [r.earned for r in eur.rows] == [0, 0, 1500]
    assert eur.rows[-1].closing == 1500
    assert report.differences == []


def test_a_difference_is_reported_loudly(db, monkeypatch):
    program = ProgramFactory(expiry_days=None)
    now = liability.end_moment(program, END) - dt.timedelta(hours=1)
    _earn(program, MemberFactory(program=program), 100, END, now)
    # A ledger kind the roll-forward does not know would leave its points out of the movements.
    monkeypatch.setattr(liability, "MOVEMENTS", tuple(m for m in liability.MOVEMENTS if m[1] != "earn"))

    report = liability.liability_report([program], END, END, now=now)

    assert any("the ledger at 100" in d for d in report.differences)


def test_breakage_per_earn_month_and_the_expected_rate_it_gives(db):
    program = ProgramFactory(expiry_days=30, timezone="UTC", expected_redemption_rate=None)
    member = MemberFactory(program=program)
    t = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
    services.points_earn(program=program, member_id=member.pk, points=100, now=t)
    services.points_redeem(program=program, member_id=member.pk, points=60, now=t + dt.timedelta(days=5))
    services.points_expire(now=t + dt.timedelta(days=40), program=program)
    now = t + dt.timedelta(days=41)

    (eur,) = liability.breakage_report([program], dt.date(2026, 1, 1), dt.date(2026, 2, 28), now=now)

    (row,) = eur.programs[0].rows
    assert (row.month, row.earned, row.redeemed, row.expired, row.outstanding, row.settled) == (
        dt.date(2026, 1, 1),
        100,
        60,
        40,
        0,
        True,
    )
    assert row.breakage == Decimal("0.4000")
    estimate = eur.programs[0].estimate
    assert (estimate.rate, estimate.source) == (Decimal("0.6000"), "observed")
    program.expected_redemption_rate = Decimal("0.9")
    assert liability.expected_redemption(program, [row]).rate == Decimal("0.9")


def test_deferred_revenue_follows_ifrs15_on_a_known_history(db):
    program = ProgramFactory(expiry_days=None, point_value=Decimal("1"), expected_redemption_rate=Decimal("0.97"))
    member = MemberFactory(program=program)
    t = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
    sale = PurchaseFactory(member=member, occurred_at=t, amount=Decimal("100000"))
    services.points_earn(program=program, member_id=member.pk, points=10_000, activity=sale, now=t)
    services.points_redeem(program=program, member_id=member.pk, points=4_500, now=t + dt.timedelta(days=300))
    now = t + dt.timedelta(days=400)

    (eur,) = liability.deferred_revenue_report([program], dt.date(2025, 1, 1), dt.date(2026, 6, 30), now=now)

    item = eur.programs[0]
    assert item.allocated_in_period == Decimal("8842.30")  # 100,000 x 9,700 / 109,700
    # 4,500 redeemed of 4,500 + 5,500 x 0.97 = 9,835 expected: 8,842.30 x 4,500 / 9,835.
    assert item.closing.expected_total == Decimal("9835.00")
    assert item.revenue == Decimal("4045.79")
    assert item.closing_liability == Decimal("4796.51")


# ---------------------------------------------------------------- pages


def _url(name, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{reverse(name)}?{query}"


@pytest.fixture
def history(db):
    program = ProgramFactory(name="=Coffee Club", currency="EUR", point_value=Decimal("0.01"), expiry_days=None)
    member = MemberFactory(program=program)
    _earn(program, member, 1234, dt.date(2026, 2, 10), program.start_of_day(dt.date(2026, 2, 10)))
    return program


@pytest.mark.parametrize(
    "name", ["dashboard:report_liability", "dashboard:report_breakage", "dashboard:report_deferred"]
)
def test_the_reports_need_the_permission(client, history, accountant, name):
    assert client.get(reverse(name)).status_code == 302  # to the login page
    client.force_login(StaffFactory())
    assert client.get(reverse(name)).status_code == 403
    client.force_login(accountant)
    response = client.get(_url(name, start="2026-01-01", end="2026-03-31"))
    assert response.status_code == 200
    assert "=Coffee Club" in response.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2026-13-01", "end": "2026-03-31"}, "Enter a valid date"),
        ({"start": "yesterday", "end": "2026-03-31"}, "Enter a valid date"),
        ({"start": "2026-03-31", "end": "2026-01-01"}, "ends before it starts"),
        ({"start": "2000-01-01", "end": "2026-03-31"}, "at most 10 years"),
        ({"start": "2026-01-01", "end": "2026-03-31", "program": "999999"}, "Select a valid choice"),
        ({"start": "2026-01-01", "end": "2026-03-31", "program": "abc"}, "Select a valid choice"),
        ({"start": "2026-01-01", "end": "2026-03-31", "currency": "XXX"}, "Select a valid choice"),
    ],
)
@pytest.mark.parametrize("suffix", ["", "_csv", "_pdf"])
def test_bad_input_is_a_form_error(client, history, accountant, params, message, suffix):
    client.force_login(accountant)
    response = client.get(_url(f"dashboard:report_liability{suffix}", **params))
    assert response.status_code == 400
    assert message in response.content.decode()


def test_staff_see_only_their_programs(client, history, accountant, monkeypatch):
    other = ProgramFactory(name="Other brand", currency="EUR")
    monkeypatch.setattr(views_reports, "programs_for", lambda user: Program.objects.filter(pk=history.pk))
    client.force_login(accountant)

    page = client.get(_url("dashboard:report_liability", start="2026-01-01", end="2026-03-31")).content.decode()
    assert "=Coffee Club" in page
    assert "Other brand" not in page
    refused = client.get(_url("dashboard:report_liability", start="2026-01-01", end="2026-03-31", program=other.pk))
    assert refused.status_code == 400


def test_the_csv_export_carries_the_figures(client, history, accountant):
    client.force_login(accountant)
    response = client.get(_url("dashboard:report_liability_csv", start="2026-01-01", end="2026-03-31"))

    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="liability-20260101-20260331.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header = next(r for r in rows if r[:2] == ["currency", "table"] and "Expiry" in r)
    held = next(r for r in rows if len(r) > 3 and r[1].startswith("Outstanding points") and r[3] == "Held in total")
    record = dict(zip(header, held, strict=True))
    assert record["Program"].startswith("'=Coffee Club")  # never a formula in a spreadsheet
    assert (record["Points"], record["Value"], record["Share of points held"]) == ("1234", "12.34", "1")
    march = next(r for r in rows if len(r) > 3 and r[1].startswith("Monthly") and r[3] == "2026-03")
    assert march[-3:] == ["1234", "1234", "0"]  # closing, ledger, difference


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dashboard:report_liability_pdf", ["Points liability", "12.34 EUR", "1,234", "Monthly roll-forward"]),
        ("dashboard:report_breakage_pdf", ["Breakage", "2026-02", "1,234"]),
        ("dashboard:report_deferred_pdf", ["Deferred revenue", "Contract liability"]),
    ],
)
def test_the_pdf_exports_carry_the_figures(client, history, accountant, name, expected):
    client.force_login(accountant)
    response = client.get(_url(name, start="2026-01-01", end="2026-03-31"))

    assert response["Content-Type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    for fragment in expected:
        assert fragment in text


def test_the_report_defaults_to_the_last_twelve_months(client, history, accountant):
    client.force_login(accountant)
    response = client.get(reverse("dashboard:report_liability"))
    assert response.status_code == 200
    assert views_reports.default_period(dt.date(2026, 3, 15)) == (dt.date(2025, 4, 1), dt.date(2026, 3, 15))
    assert views_reports.default_period(dt.date(2026, 12, 5)) == (dt.date(2026, 1, 1), dt.date(2026, 12, 5))


def test_the_page_and_the_csv_shout_a_difference(client, history, accountant, monkeypatch):
    monkeypatch.setattr(liability, "MOVEMENTS", tuple(m for m in liability.MOVEMENTS if m[1] != "earn"))
    client.force_login(accountant)

    page = client.get(_url("dashboard:report_liability", start="2026-01-01", end="2026-03-31")).content.decode()
    assert 'class="reconciliation" role="alert">Reconciliation difference:' in page
    assert "Reconciled to the ledger" not in page
    exported = client.get(_url("dashboard:report_liability_csv", start="2026-01-01", end="2026-03-31"))
    assert "RECONCILIATION DIFFERENCE" in exported.content.decode()
