"""`manage.py load_demo`: a realistic demo program, posted through the services, idempotent."""

import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory

from loyalty.models import Activity, Allocation, LedgerEntry, LedgerJobRun, Member, Program
from loyalty.selectors import ledger_problems

LOGIN_LINE = re.compile(r"^Staff login: http://127\.0\.0\.1:8000/admin/  user: demo  password: (\S+)$")


def login_request():
    """The staff login's request: the lock-out backend (django-axes) needs one."""
    return RequestFactory().post("/admin/login/")


def load_demo(**options) -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out, **options)
    return out.getvalue()


def login_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Staff login:")]


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Program, Member, Activity, LedgerEntry, Allocation, LedgerJobRun)
    }


@pytest.fixture
def demo_output(db):
    return load_demo(members=25)


def test_load_demo_creates_the_demo_program(demo_output):
    program = Program.objects.get(slug="demo")

    assert program.name == "Demo Coffee Roasters"
    assert (program.currency, program.earn_rate, program.expiry_days, program.pending_days, program.timezone) == (
        "EUR",
        1,
        365,
        14,
        "Europe/Paris",
    )
    # Cards add anonymous members (purchases on unassigned cards), the referrals three
    # referred friends and the member page's story two members on top of the history.
    history = Member.objects.filter(program=program).exclude(enrollment_channel=Member.Channel.CARD)
    history = history.exclude(external_id__startswith="demo-friend-").exclude(external_id__startswith="demo-story-")
    assert history.count() == 25


def test_load_demo_prints_one_login_line_that_logs_in(demo_output):
    lines = login_lines(demo_output)

    assert len(lines) == 1
    password = LOGIN_LINE.match(lines[0]).group(1)
    user = authenticate(login_request(), username="demo", password=password)
    assert user is not None
    assert user.is_staff
    assert user.is_superuser
    assert user.groups.filter(name="Owner").exists()


def test_load_demo_posts_a_realistic_history(demo_output):
    kinds = set(LedgerEntry.objects.values_list("kind", flat=True))
    members = Member.objects.filter(program__slug="demo").exclude(enrollment_channel=Member.Channel.CARD)

    assert {"earn", "redeem", "reversal", "expire", "adjust"} <= kinds
    assert Activity.objects.filter(type="purchase").count() > 50
    assert Activity.objects.filter(type="refund").exists()
    assert sum(m.expired for m in members) > 0
    assert sum(m.pending for m in members) > 0
    assert members.filter(status=Member.Status.BLOCKED).exists()
    assert all(m.email and m.first_name and m.birthday for m in members)
    # Every earn is what the purchase amount earns at the program's rate.
    program = Program.objects.get(slug="demo")
    for entry in LedgerEntry.objects.filter(kind="earn").select_related("activity").order_by("id")[:50]:
        assert entry.points == program.points_for_amount(entry.activity.amount)


def test_load_demo_leaves_a_consistent_ledger(demo_output):
    assert list(ledger_problems()) == []
    call_command("verify_ledger", stdout=io.StringIO())  # raises CommandError on a mismatch


def test_load_demo_twice_changes_no_history_and_resets_the_password(demo_output):
    before = counts()
    first_password = LOGIN_LINE.match(login_lines(demo_output)[0]).group(1)

    second = load_demo(members=25)

    assert counts() == before
    assert len(login_lines(second)) == 1
    second_password = LOGIN_LINE.match(login_lines(second)[0]).group(1)
    assert second_password != first_password
    assert authenticate(login_request(), username="demo", password=second_password) is not None
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert list(ledger_problems()) == []


@pytest.mark.slow
def test_load_demo_at_full_size(db):
    output = load_demo()

    members = Member.objects.filter(program__slug="demo").exclude(enrollment_channel=Member.Channel.CARD)
    story = members.filter(external_id__startswith="demo-story-")  # the member page's story
    assert members.exclude(external_id__startswith="demo-friend-").exclude(pk__in=story).count() == 300
    assert len(login_lines(output)) == 1
    assert list(ledger_problems()) == []


def test_load_demo_prints_one_login_per_role_and_makes_a_second_brand(demo_output):
    line = next(line for line in demo_output.splitlines() if line.startswith("Role logins (same URL): "))
    logins = re.findall(r"(\S+) / (\S+) \(([^)]*)\)", line.removeprefix("Role logins (same URL): "))

    assert [(user, role) for user, _password, role in logins] == [
        ("demo-owner", "Owner"),
        ("demo-manager", "Manager"),
        ("demo-support", "Support"),
        ("demo-bar-manager", "Manager, Demo Espresso Bar only"),
    ]
    for username, password, role in logins:
        user = authenticate(username=username, password=password)
        assert user is not None
        assert user.is_staff
        assert not user.is_superuser
        assert user.groups.filter(name=role.split(",")[0]).exists()
    bar = Program.objects.get(slug="demo-bar")
    assert bar.name == "Demo Espresso Bar"
    assert Member.objects.filter(program=bar).count() >= 5
