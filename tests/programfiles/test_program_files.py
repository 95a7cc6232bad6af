"""Program files (docs/program-files.md): export, load, dry-run diff, refusals with the path,
idempotence, atomicity, round trips and the published JSON Schema."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
from pathlib import Path

import jsonschema
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from loyalty.models import LedgerEntry, Member, Program
from notifications.models import EmailTemplate, WebhookEndpoint
from programfiles.export import dumps, export_document, loads
from programfiles.loading import DocumentInvalid, load_document
from programfiles.schema import program_schema, schema_text
from rewards.models import Reward
from tests.loyalty.factories import MemberFactory
from tests.programfiles.builders import build_program
from tiers.models import Tier
from workflows.models import EarningRule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _public_urls(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True  # no DNS in tests


def load(document, **kwargs):
    return load_document(copy.deepcopy(document), **kwargs)


def problems_of(document) -> list[str]:
    with pytest.raises(DocumentInvalid) as caught:
        load(document)
    return [str(p) for p in caught.value.problems]


def rule_item(document, code):
    return next(item for item in document["earning_rules"] if item["code"] == code)


@pytest.mark.django_db
def test_export_uses_natural_keys_sorted_without_ids_timestamps_or_secrets():
    program = build_program()
    document = export_document(program)
    text = dumps(document)

    assert text.startswith("version: 1\n")
    rule = rule_item(document, "double-weekend")
    assert rule["conditions"]["tiers"] == ["Gold", "Silver"]
    assert rule["conditions"]["days_of_week"] == [5, 6]
    assert rule["campaign"] == {"starts_at": "2026-12-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z"}
    assert rule["multiplier"] == 2
    assert rule["caps"]["per_day"] == 500
    assert [r["code"] for r in document["rewards"]] == ["5-off", "free-shipping"]
    assert document["rewards"][0]["min_tier"] == "Silver"
    assert "issued_count" not in document["rewards"][0]
    assert document["automations"][0]["actions"]["reward"] == "5-off"
    assert [t["name"] for t in document["tiers"]] == ["Gold", "Silver"]
    secret = WebhookEndpoint.objects.get(program=program).secret
    for absent in (secret, "created_at", "updated_at", "issued_count", '"id"', f"program_id: {program.pk}"):
        assert absent not in text
    assert dumps(document, "json") == dumps(export_document(program), "json")  # stable


@pytest.mark.django_db
def test_committed_schema_is_the_one_the_code_uses_and_an_export_validates():
    assert (ROOT / "docs" / "program.schema.json").read_text() == schema_text()
    program = build_program()
    jsonschema.validate(json.loads(dumps(export_document(program), "json")), program_schema())


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_into_an_empty_database_is_byte_identical(fmt):
    with transaction.atomic():
        text = dumps(export_document(build_program()), fmt)
        transaction.set_rollback(True)
    assert not Tier.objects.exists()
    assert not EarningRule.objects.exists()

    result = load(loads(text))

    assert result.created
    assert dumps(export_document(result.program), fmt) == text


@pytest.mark.django_db
def test_the_demo_program_round_trips_and_validates_against_the_published_schema():
    """load_demo commits in durable transactions (it cannot be rolled back inside a test), so
    its file is loaded into a new program under another slug: the same path as an empty database."""
    call_command("load_demo", members=5, stdout=io.StringIO())
    demo = Program.objects.get(slug="demo")
    yaml_text, json_text = dumps(export_document(demo)), dumps(export_document(demo), "json")
    published = json.loads((ROOT / "docs" / "program.schema.json").read_text())
    jsonschema.validate(json.loads(json_text), published)

    result = load(loads(yaml_text), slug="demo-copy")
    assert result.created
    assert dumps(export_document(result.program)) == yaml_text.replace("slug: demo\n", "slug: demo-copy\n")
    copy_json = dumps(export_document(result.program), "json")
    assert copy_json == json_text.replace('"slug": "demo"', '"slug": "demo-copy"')
    assert load(loads(json_text), slug="demo-copy").changes == []


@pytest.mark.django_db
def test_load_twice_is_load_once(tmp_path):
    program = build_program()
    document = export_document(program)
    rule_item(document, "double-weekend")["multiplier"] = 3
    document["tiers"][0]["threshold"] = 600

    first = load(document)
    second = load(document)

    assert [str(c) for c in first.changes] == [
        "tiers.Gold.threshold: 500 -> 600",
        "earning_rules.double-weekend.multiplier: 2 -> 3",
    ]
    assert second.changes == []
    assert second.report() == []
    out = io.StringIO()
    path = tmp_path / "shop.yaml"
    path.write_text(dumps(document))
    call_command("load_program", str(path), stdout=out)
    assert "No changes" in out.getvalue()


@pytest.mark.django_db
def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path):
    program = build_program()
    document = export_document(program)
    rule_item(document, "double-weekend")["multiplier"] = 3
    rule_item(document, "double-weekend")["conditions"]["tiers"] = ["Gold"]
    document["branding"]["brand_color"] = "#112233"
    document["rewards"] = [r for r in document["rewards"] if r["code"] != "free-shipping"]
    document["tiers"].append({"name": "Platinum", "position": 3, "threshold": 2000, "multiplier": 3})
    path = tmp_path / "shop.yaml"
    path.write_text(dumps(document))
    before = dumps(export_document(program))

    out = io.StringIO()
    call_command("load_program", str(path), "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    assert 'branding.brand_color: "#1F6FEB" -> "#112233"' in lines
    assert "tiers.Platinum: added" in lines
    assert "rewards.free-shipping: removed" in lines
    assert "earning_rules.double-weekend.multiplier: 2 -> 3" in lines
    assert 'earning_rules.double-weekend.conditions.tiers: ["Gold", "Silver"] -> ["Gold"]' in lines
    assert lines[-1] == "Dry run: 5 change(s) to program shop; nothing was written."
    assert dumps(export_document(program)) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: rule_item(d, "double-weekend")["conditions"].update(min_amount="twenty"),
            "earning_rules[0].conditions.min_amount: must be a number or empty (null)",
        ),
        (lambda d: rule_item(d, "double-weekend").update(colour="red"), "earning_rules[0].colour: unknown key"),
        (
            lambda d: rule_item(d, "double-weekend")["conditions"].update(tiers=["Gold", "Platinum"]),
            "earning_rules[0].conditions.tiers[1]: no tier named 'Platinum' in this document",
        ),
        (
            lambda d: d["rewards"][0].update(min_tier="Bronze"),
            "rewards[0].min_tier: no tier named 'Bronze' in this document",
        ),
        (
            lambda d: d["automations"][0]["actions"].update(reward="nope"),
            "automations[0].actions.reward: no reward with code 'nope' in this document",
        ),
        (lambda d: rule_item(d, "double-weekend").update(kind="per_planet"), "earning_rules[0].kind: must be one of"),
        (lambda d: d.update(version=2), "version: must be 1"),
    ],
)
def test_schema_and_reference_errors_name_the_path(change, expected):
    program = build_program()
    document = export_document(program)
    document["earning_rules"].sort(key=lambda r: r["code"] != "double-weekend")  # it is [0]
    change(document)

    found = problems_of(document)

    assert any(p.startswith(expected) for p in found), found


@pytest.mark.django_db
def test_domain_errors_reuse_the_admin_checks_with_paths():
    program = build_program()
    document = export_document(program)
    templates = document["email_templates"]
    templates[0]["html_body"] = "<p>{% if member.first_name %}Hi</p>"
    document["automations"][0]["actions"]["email_body"] = "{{ coupon.code }}x{{ nope }}"
    document["automations"][0]["actions"]["reward"] = None
    rule = rule_item(document, "double-weekend")
    index = document["earning_rules"].index(rule)
    rule["campaign"]["ends_at"] = "2026-11-01T00:00:00Z"
    document["branding"]["brand_color"] = "blue"
    document["program"]["currency"] = "E1"
    document["webhook_endpoints"][0]["url"] = "ftp://hooks.shop.example"

    found = problems_of(document)

    assert any(p.startswith("email_templates[0].html_body: Template error") for p in found), found
    assert any(p.startswith("automations[0].actions.email_body:") for p in found), found
    assert f"earning_rules[{index}].campaign.ends_at: The end must be after the start." in found
    assert any(p.startswith("branding.brand_color:") for p in found), found
    assert "program.currency: Use a three-letter ISO 4217 code, e.g. EUR." in found
    assert any(p.startswith("webhook_endpoints[0].url:") for p in found), found


@pytest.mark.django_db
def test_an_error_in_the_last_section_leaves_nothing_written():
    program = build_program()
    document = export_document(program)
    before = dumps(document)
    document["program"]["name"] = "Renamed"
    document["tiers"][0]["threshold"] = 700
    rule_item(document, "double-weekend")["multiplier"] = 5
    document["webhook_endpoints"][0]["url"] = "not a url"

    with pytest.raises(DocumentInvalid):
        load(document)

    assert dumps(export_document(program)) == before


@pytest.mark.django_db
def test_a_new_program_with_an_error_is_not_created():
    program = build_program()
    document = export_document(program)
    document["program"]["slug"] = "elsewhere"
    document["email_templates"][0]["subject"] = "{{ nope }}"
    with pytest.raises(DocumentInvalid):
        load(document)
    assert not Program.objects.filter(slug="elsewhere").exists()


@pytest.mark.django_db
def test_members_ledger_and_secrets_are_untouched_and_history_is_deactivated_not_deleted():
    program = build_program()
    member = MemberFactory(program=program)
    from loyalty.services import points_adjust

    points_adjust(program=program, member_id=member.pk, points=80, reason="gift", source="test")
    endpoint = WebhookEndpoint.objects.get(program=program)
    secret = endpoint.secret
    tier = Tier.objects.get(program=program, name="Gold")
    from tiers.models import MemberTier

    MemberTier.objects.create(member=member, tier=tier, since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    entries = list(LedgerEntry.objects.values_list("pk", "points", "remaining"))
    member_row = Member.objects.values().get(pk=member.pk)
    document = export_document(program)
    document["tiers"] = [t for t in document["tiers"] if t["name"] != "Gold"]
    for item in document["earning_rules"] + [document["automations"][0]]:
        item["conditions"]["tiers"] = [n for n in item["conditions"]["tiers"] if n != "Gold"]
    document["email_templates"] = []
    document["webhook_endpoints"][0]["description"] = "CRM (new)"

    result = load(document)

    assert "tiers.Gold: left out of the document, deactivated (members' history refers to it)" in result.report()
    assert Tier.objects.get(pk=tier.pk).is_active is False
    assert not EmailTemplate.objects.filter(program=program).exists()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    assert list(LedgerEntry.objects.values_list("pk", "points", "remaining")) == entries
    assert Member.objects.values().get(pk=member.pk) == member_row


@pytest.mark.django_db
def test_left_out_objects_without_history_are_deleted_and_builtins_deactivated():
    program = build_program()
    document = export_document(program)
    document["rewards"] = [r for r in document["rewards"] if r["code"] == "5-off"]
    document["earning_rules"] = [r for r in document["earning_rules"] if r["code"] != "purchase"]
    purchase = EarningRule.objects.get(program=program, builtin="purchase")
    purchase.is_active = True
    purchase.save()

    load(document)

    assert not Reward.objects.filter(program=program, code="free-shipping").exists()
    assert EarningRule.objects.get(pk=purchase.pk).is_active is False


@pytest.mark.django_db
def test_tiers_can_swap_positions():
    program = build_program()
    document = export_document(program)
    for tier in document["tiers"]:
        tier["position"] = 3 - tier["position"]
        tier["threshold"] = 600 - tier["threshold"]

    load(document)

    assert dict(Tier.objects.filter(program=program).values_list("name", "position")) == {"Gold": 1, "Silver": 2}


@pytest.mark.django_db
def test_command_refuses_an_invalid_file_with_paths(tmp_path):
    program = build_program()
    document = export_document(program)
    document["tiers"][0]["position"] = "first"
    path = tmp_path / "bad.json"
    path.write_text(dumps(document, "json"))
    err = io.StringIO()

    with pytest.raises(CommandError, match="nothing was written"):
        call_command("load_program", str(path), stderr=err)

    assert "tiers[0].position: must be a whole number" in err.getvalue()


@pytest.mark.django_db
def test_export_command_writes_a_file(tmp_path):
    build_program()
    target = tmp_path / "shop.json"
    call_command("export_program", "shop", "--format", "json", "--output", str(target), stderr=io.StringIO())
    assert json.loads(target.read_text())["program"]["slug"] == "shop"


@pytest.mark.django_db
def test_a_stock_below_the_coupons_issued_is_refused_and_the_counter_is_kept():
    program = build_program()
    Reward.objects.filter(program=program, code="5-off").update(issued_count=40)
    document = export_document(program)
    document["rewards"][0]["stock"] = 30

    assert problems_of(document) == ["rewards[0].stock: must be at least the 40 coupons issued and not cancelled"]

    document["rewards"][0]["stock"] = 60
    load(document)
    assert Reward.objects.values_list("stock", "issued_count").get(program=program, code="5-off") == (60, 40)
