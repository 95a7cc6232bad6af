"""The dashboard page (dashboard.views): permission, program scoping, the CSV equal to the
charts' numbers, bad input as form errors, and its figures equal to the ledger's."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from dashboard import charts, rollups
from dashboard.models import DailyStat
from loyalty import services
from loyalty.models import Activity
from tests.loyalty.factories import MemberFactory, StaffFactory

from .ledger_truth import truth

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
URL = reverse("dashboard:home")


@pytest.fixture
def rolled(program, other_program):
    staff = StaffFactory(is_superuser=True)
    for i, p in enumerate((program, other_program)):
        for j in range(3):
            m = MemberFactory(program=p, enrolled_at=dt.datetime(2026, 3, 1 + j, 10, tzinfo=dt.UTC))
            services.points_earn(
                program=p, member_id=m.pk, points=100 * (j + 1) + i, now=dt.datetime(2026, 3, 2 + j, 10, tzinfo=dt.UTC)
            )
        services.points_adjust(
            program=p,
            member_id=m.pk,
            points=-50,
            reason="fix",
            actor=staff,
            now=dt.datetime(2026, 3, 6, 10, tzinfo=dt.UTC),
        )
        rollups.rollup_program(p, now=NOW)
    return program


def query(prog, **extra):
    return {
        "program": extra.pop("program", prog.pk),
        "start": "2026-03-01",
        "end": "2026-03-09",
        "bucket": "day",
        **extra,
    }


def test_staff_only_and_permission(client, rolled, django_user_model):
    assert client.get(URL).status_code == 302  # to the login
    user = StaffFactory(is_superuser=False, is_staff=True)
    client.force_login(user)
    assert client.get(URL, query(rolled)).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_reports", content_type__app_label="loyalty"))
    assert client.get(URL, query(rolled)).status_code == 200


def test_page_shows_kpis_charts_and_csv_links(client, staff, rolled):
    client.force_login(staff)
    r = client.get(URL, query(rolled))
    html = r.content.decode()
    assert r.status_code == 200
    assert 'id="kpi-members"' in html
    assert "Points earned" in html
    for key in ("enrolment", "points", "rewards", "tiers", "rules", "revenue"):
        assert f'id="chart-{key}"' in html
        assert reverse("dashboard:chart", kwargs={"key": key, "fmt": "csv"}) in html
    assert "<script" not in html.split('id="content-main"')[1]
    # The KPI equals the roll-ups' sum.
    board = r.context["board"]
    assert board.kpis[3].value.replace("\u202f", "") == "600"  # 100 + 200 + 300 earned


def test_programs_for_scopes_the_picker(client, staff, rolled, other_program, monkeypatch):
    from loyalty.models import Program

    monkeypatch.setattr("dashboard.views.programs_for", lambda user: Program.objects.filter(pk=rolled.pk))
    client.force_login(staff)
    r = client.get(URL)
    assert list(r.context["form"].fields["program"].queryset) == [rolled]
    r = client.get(URL, query(other_program))
    assert "program" in r.context["form"].errors  # not a choice for this user
    assert "board" not in r.context
    assert (
        client.get(reverse("dashboard:chart", kwargs={"key": "points", "fmt": "csv"}), query(other_program)).status_code
        == 400
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "2026-02-30"},
        {"start": "yesterday"},
        {"start": "2026-03-09", "end": "2026-03-01"},
        {"start": "2020-01-01", "end": "2026-03-09"},  # more than two years
        {"bucket": "year"},
        {"idle_days": "-3"},
        {"program": "abc"},
    ],
)
def test_bad_input_is_a_form_error(client, staff, rolled, bad):
    client.force_login(staff)
    r = client.get(URL, query(rolled, **bad))
    assert r.status_code == 200
    assert r.context["form"].errors
    assert "board" not in r.context
    assert (
        client.get(reverse("dashboard:chart", kwargs={"key": "points", "fmt": "svg"}), query(rolled, **bad)).status_code
        == 400
    )


@pytest.mark.parametrize("bucket", ["day", "week", "month"])
def test_csv_equals_the_charts_numbers(client, staff, rolled, bucket):
    client.force_login(staff)
    board = charts.build_dashboard(rolled, dt.date(2026, 3, 1), dt.date(2026, 3, 9), bucket)
    for key, chart in board.charts.items():
        r = client.get(reverse("dashboard:chart", kwargs={"key": key, "fmt": "csv"}), query(rolled, bucket=bucket))
        assert r.status_code == 200
        assert r["Content-Disposition"].startswith("attachment")
        rows = list(csv.reader(io.StringIO(r.content.decode())))
        assert rows[0] == chart.columns
        assert rows[1:] == [[str(charts._csv_value(v)) if v is not None else "" for v in row] for row in chart.rows]
        svg = client.get(reverse("dashboard:chart", kwargs={"key": key, "fmt": "svg"}), query(rolled, bucket=bucket))
        assert svg["Content-Type"] == "image/svg+xml"
        assert b"<script" not in svg.content
    points = board.charts["points"]
    assert sum(row[1] for row in points.rows) == 600
    assert sum(row[5] for row in points.rows) == 50


def test_members_at_risk_link_to_the_member(client, staff, program):
    quiet = MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=400))
    busy = MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=400))
    for m in (quiet, busy):
        services.points_earn(program=program, member_id=m.pk, points=900, now=NOW - dt.timedelta(days=200))
    Activity.objects.create(program=program, member=busy, type="store_visit", occurred_at=dt.datetime.now(dt.UTC))
    rollups.rollup_program(program, now=NOW)
    client.force_login(staff)
    r = client.get(URL, {"program": program.pk, "idle_days": 60, "min_balance": 500})
    rows = r.context["at_risk"]
    assert [row["member"] for row in rows] == [quiet]
    assert reverse("admin:loyalty_member_change", args=[quiet.pk]) in r.content.decode()


def test_empty_state(client, staff, program):
    client.force_login(staff)
    r = client.get(URL, {"program": program.pk})
    assert r.status_code == 200
    assert "No figures for this period yet" in r.content.decode()


def test_dashboard_figures_equal_the_ledger_on_the_demo(client, staff, django_db_blocker):
    """load_demo (with its roll-up): the dashboard's figures equal those computed from the ledger."""
    from django.core.management import call_command

    from loyalty.models import Program

    call_command("load_demo", stdout=io.StringIO())
    program = Program.objects.get(slug="demo")
    last = DailyStat.objects.filter(program=program).latest("day").day
    first = last - dt.timedelta(days=27)
    board = charts.build_dashboard(program, first, last, "week")
    stats = {s.day: s for s in DailyStat.objects.filter(program=program, day__gte=first)}
    for day in (first, first + dt.timedelta(days=13), last):
        expected = truth(program, day)
        got = {k: getattr(stats[day], k) for k in expected if k != "tiers"}
        assert got == {k: v for k, v in expected.items() if k != "tiers"}, day
    earned = sum(truth(program, first + dt.timedelta(days=i))["earned"] for i in range(28))
    assert sum(row[1] for row in board.charts["points"].rows) == earned
    client.force_login(staff)
    r = client.get(URL, {"program": program.pk, "start": first, "end": last, "bucket": "week"})
    assert r.status_code == 200
    assert f"{earned:,}".replace(",", "\u202f") in r.content.decode()
