"""A program's configuration as one document (`export_program`, the admin's download), and
the document as YAML or JSON text.

Stable output: keys sorted, lists sorted by natural key, no timestamps, no ids, no secrets
(webhook signing secrets and API keys are not part of the configuration).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from django.db import models

from loyalty.models import Program
from notifications.models import EmailSettings, EmailTemplate, WebhookEndpoint
from rewards.models import Reward, RewardSettings
from tiers.models import Tier
from workflows.models import Automation, EarningRule, FraudLimits, ProgramBudget, ReferralSettings

from .spec import REWARD, SECTIONS, TIER, TIERS, VERSION, Section, to_document

FORMATS = ("yaml", "json")


def _set(item: dict[str, Any], path: str, value: Any) -> None:
    *groups, last = path.split(".")
    for group in groups:
        item = item.setdefault(group, {})
    item[last] = value


def item_key(section: Section, item: dict[str, Any]) -> str:
    """An item's natural key as one string ("double-weekend", "welcome/en")."""
    return "/".join(str(item.get(name)) for name in section.key)


def _item(section: Section, obj: models.Model, names: dict[str, dict[int, str]]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for f in section.fields:
        if f.ref == TIER:
            tier_id = getattr(obj, f"{f.attr}_id")
            value: Any = names["tier"].get(tier_id) if tier_id else None
        elif f.ref == TIERS:
            value = sorted(names["tier"][t.pk] for t in obj.tiers.all())
        elif f.ref == REWARD:
            value = names["reward"].get(obj.reward_id) if obj.reward_id else None
        else:
            value = to_document(section.model_field(f), getattr(obj, f.attr))
        _set(item, f.path, value)
    return item


def objects_of(program: Program) -> dict[str, Any]:
    """The program's configuration objects per section (lists, or one object; unsaved
    defaults for a settings row the program does not have yet)."""
    pid = program.pk
    return {
        "program": program,
        "branding": program,
        "tiers": list(Tier.objects.filter(program_id=pid)),
        "rewards": list(Reward.objects.filter(program_id=pid)),
        "coupon_policy": RewardSettings.objects.filter(program_id=pid).first() or RewardSettings(program_id=pid),
        "earning_rules": list(EarningRule.objects.filter(program_id=pid).prefetch_related("tiers")),
        "referrals": ReferralSettings.objects.filter(program_id=pid).first() or ReferralSettings(program_id=pid),
        "fraud_limits": FraudLimits.objects.filter(program_id=pid).first() or FraudLimits(program_id=pid),
        "automations": list(Automation.objects.filter(program_id=pid).prefetch_related("tiers")),
        "budget": ProgramBudget.objects.filter(program_id=pid).first() or ProgramBudget(program_id=pid),
        "email_settings": EmailSettings.objects.filter(program_id=pid).first() or EmailSettings(program_id=pid),
        "email_templates": list(EmailTemplate.objects.filter(program_id=pid)),
        "webhook_endpoints": list(WebhookEndpoint.objects.filter(program_id=pid)),
    }


def export_document(program: Program) -> dict[str, Any]:
    """The whole configuration of `program` as plain data (the document before text)."""
    objects = objects_of(program)
    names = {
        "tier": {t.pk: t.name for t in objects["tiers"]},
        "reward": {r.pk: r.code for r in objects["rewards"]},
    }
    document: dict[str, Any] = {"version": VERSION}
    for section in SECTIONS:
        found = objects[section.name]
        if section.is_list:
            items = [_item(section, obj, names) for obj in found]
            document[section.name] = sorted(items, key=lambda item, s=section: item_key(s, item))
        else:
            document[section.name] = _item(section, found, names)
    return document


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def dumps(document: dict[str, Any], fmt: str = "yaml") -> str:
    """The document as text: the `version` header first, then every key sorted; UTF-8
    characters kept; a final newline."""
    ordered = {"version": document.get("version"), **_sorted({k: v for k, v in document.items() if k != "version"})}
    if fmt == "json":
        return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.dump(
            ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
        )
    raise ValueError(f"Unknown format {fmt!r}: yaml or json.")


# libyaml's parser and emitter when PyYAML was built with it (ten times faster on big files).
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(_SafeDumper):
    """Multi-line text (templates, terms) as literal blocks, readable in a diff."""


def _str(dumper: Any, value: str) -> yaml.ScalarNode:
    if "\n" in value:  # the emitter falls back to quotes when a literal block cannot hold it
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


class _Loader(_SafeLoader):
    """YAML without its implicit dates: a date-time stays the text the schema checks."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class DocumentUnreadable(ValueError):
    pass


def loads(text: str) -> Any:
    """A document from YAML or JSON text (JSON is YAML; both parsers are tried for clear errors)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentUnreadable(f"Not valid JSON: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise DocumentUnreadable(f"Not valid YAML: {exc}") from exc
