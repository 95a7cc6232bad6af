"""The "Simulate" page and `simulate_rules` (docs/simulation.md): the live rules or a program
file's rules replayed over a period, nothing written, CSV; bad input refused in words."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Activity, LedgerEntry, StaffProgram
from programfiles.export import dumps, export_document
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.workflows.factories import EarningRuleFactory
from workflows import services
from workflows.models import EarningRule, RuleAward

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    """A program with a base rule and three purchases in the last days."""
    program = ProgramFactory(slug="shop", earn_rate=1, point_value=Decimal("0.01"), expiry_days=None)
    EarningRuleFactory(program=program, name="Base", code="base", kind="per_amount", points=None)
    member = MemberFactory(program=program)
    now = timezone.now()
    for days, amount in ((1, "20.00"), (2, "35.50"), (3, "10.00")):
        services.activity_report(
            program=program,
            member=member,
            type="purchase",
            occurred_at=now - dt.timedelta(days=days),
            order_id=f"o{days}",
            amount=Decimal(amount),
        )
    program.refresh_from_db()
    return program


def _doubled_document(program):
    document = export_document(program)
    for rule in document["earning_rules"]:
        rule["multiplier"] = 2
    return dumps(document)


def test_the_rules_list_and_the_program_page_link_to_simulate(client, shop):
    client.force_login(StaffFactory(is_superuser=True))
    url = reverse("programfiles:simulate")
    assert url in client.get(reverse("admin:workflows_earningrule_changelist")).content.decode()
    assert (
        f"{url}?program={shop.pk}"
        in client.get(reverse("admin:loyalty_program_change", args=[shop.pk])).content.decode()
    )


def test_simulating_the_live_rules_shows_the_ledger_figures_and_writes_nothing(client, shop):
    client.force_login(StaffFactory(is_superuser=True))
    entries, awards = LedgerEntry.objects.count(), RuleAward.objects.count()
    response = client.post(reverse("programfiles:simulate"), {"program": shop.pk, "days": 7, "source": "live"})
    assert response.status_code == 200
    result = response.context["result"]
    assert result.points == result.live_points == 65
    assert b"data:image/svg+xml;base64," in response.content
    assert (LedgerEntry.objects.count(), RuleAward.objects.count()) == (entries, awards)


def test_a_program_file_draft_is_replayed_and_downloads_as_csv(client, shop):
    client.force_login(StaffFactory(is_superuser=True))
    upload = SimpleUploadedFile("shop.yaml", _doubled_document(shop).encode())
    response = client.post(
        reverse("programfiles:simulate"), {"program": shop.pk, "days": 7, "source": "file", "file": upload}
    )
    result = response.context["result"]
    assert result.points == 131  # 40 + 71 + 20
    assert result.liability_difference == 66
    assert EarningRule.objects.get(program=shop).multiplier == 1  # nothing saved
    text = response.context["text"]
    download = client.post(
        reverse("programfiles:simulate"),
        {"program": shop.pk, "days": 7, "source": "file", "text": text, "export": "csv"},
    )
    assert download["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[1] == ["total", "points", "131", "65", "66"]


def test_bad_input_is_refused_in_words(client, shop):
    client.force_login(StaffFactory(is_superuser=True))
    url = reverse("programfiles:simulate")
    both = client.post(url, {"program": shop.pk, "days": 7, "since": "2026-01-01", "source": "live"})
    assert "not both" in str(both.context["form"].non_field_errors())
    nofile = client.post(url, {"program": shop.pk, "days": 7, "source": "file"})
    assert "file" in nofile.context["form"].errors
    broken = client.post(
        url,
        {"program": shop.pk, "days": 7, "source": "file", "file": SimpleUploadedFile("x.yaml", b"version: 1\n")},
    )
    assert broken.status_code == 200
    assert broken.context["problems"]
    assert "result" not in broken.context


def test_a_user_without_the_program_cannot_simulate_it(client, shop):
    user = StaffFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_earningrule"))
    StaffProgram.objects.create(user=user, program=ProgramFactory())
    client.force_login(user)
    response = client.post(reverse("programfiles:simulate"), {"program": shop.pk, "days": 7, "source": "live"})
    assert response.status_code == 200
    assert "program" in response.context["form"].errors
    assert "result" not in response.context


def test_explain_page_of_a_stored_activity_and_its_link(client, shop):
    client.force_login(StaffFactory(is_superuser=True))
    activity = Activity.objects.filter(program=shop).first()
    url = reverse("admin:workflows_earningrule_explain", args=[activity.pk])
    assert url in client.get(reverse("admin:loyalty_activity_change", args=[activity.pk])).content.decode()
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["explained"].explanation.points == page.context["explained"].live_points
    assert b"fired" in page.content
    assert client.get(reverse("admin:workflows_earningrule_explain", args=[10**9])).status_code == 404


def test_simulate_rules_command_prints_text_json_and_csv(shop, tmp_path, capsys):
    call_command("simulate_rules", "shop", "--days", "7")
    assert "Points: 65 (live rules: 65" in capsys.readouterr().out
    path = tmp_path / "shop.yaml"
    path.write_text(_doubled_document(shop))
    call_command("simulate_rules", "shop", "--days", "7", "--rules-file", str(path), "--format", "json")
    data = json.loads(capsys.readouterr().out)
    assert (data["points"], data["live_points"], data["liability_difference"]) == (131, 65, 66)
    today = timezone.localdate()
    call_command(
        "simulate_rules",
        "shop",
        "--since",
        str(today - dt.timedelta(days=10)),
        "--until",
        str(today),
        "--format",
        "csv",
    )
    assert capsys.readouterr().out.startswith("section,key,simulated,live,difference")
    with pytest.raises(CommandError, match="not both"):
        call_command("simulate_rules", "shop", "--days", "3", "--since", "2026-01-01")
    with pytest.raises(CommandError, match="No program"):
        call_command("simulate_rules", "nope")


def test_the_open_draft_is_simulated_from_its_page(client, shop):
    from programfiles import services as drafts
    from programfiles.export import loads

    staff = StaffFactory(is_superuser=True)
    client.force_login(staff)
    refused = client.post(reverse("programfiles:simulate"), {"program": shop.pk, "days": 7, "source": "draft"})
    assert "has no open draft" in refused.content.decode()
    assert "result" not in refused.context

    draft = drafts.draft_start(program=shop, actor=staff)
    document = loads(_doubled_document(shop))
    drafts.draft_sections_replace(draft=draft, document={"earning_rules": document["earning_rules"]}, actor=staff)
    page = client.get(reverse("admin:programfiles_programdraft_change", args=[draft.pk])).content.decode()
    assert f"?program={shop.pk}&amp;source=draft" in page

    response = client.post(reverse("programfiles:simulate"), {"program": shop.pk, "days": 7, "source": "draft"})
    result = response.context["result"]
    assert (result.points, result.live_points) == (131, 65)
    assert EarningRule.objects.get(program=shop).multiplier == 1  # the draft is not live


def test_simulate_rules_command_replays_the_open_draft(shop, capsys):
    from programfiles import services as drafts
    from programfiles.export import loads

    with pytest.raises(CommandError, match="no open draft"):
        call_command("simulate_rules", "shop", "--days", "7", "--draft")
    staff = StaffFactory(is_superuser=True)
    draft = drafts.draft_start(program=shop, actor=staff)
    document = loads(_doubled_document(shop))
    drafts.draft_sections_replace(draft=draft, document={"earning_rules": document["earning_rules"]}, actor=staff)
    call_command("simulate_rules", "shop", "--days", "7", "--draft", "--format", "json")
    assert json.loads(capsys.readouterr().out)["points"] == 131
