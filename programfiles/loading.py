"""Loading a program file (`load_program`, the admin's upload): check it, apply it in one
transaction, and say what changed (docs/program-files.md).

- The schema first (`schema.program_schema`): wrong types, unknown keys, unknown values.
- Then the references (a tier's name, a reward's code) and duplicate natural keys.
- Then every object through the admin's own form where there is one (the program, earning
  rules, automations, email settings, email templates, webhook endpoints) and the model's
  `full_clean` for every object, so a file cannot hold what the admin would refuse; the tiers'
  order is checked once they are all written (`tiers.services.tier_order_error`).
- Every problem names its place in the document (`earning_rules[3].conditions.min_amount`);
  with any problem nothing is written.
- Objects the document leaves out: deleted when nothing refers to them, deactivated when
  members' history does (awards of a rule, runs of an automation, coupons of a reward, members
  in a tier, deliveries of an endpoint). An email template left out goes back to the default.
- Members, the ledger, coupons, stock counters and secrets are never touched.

The diff compares the program's export before and after, inside the transaction: what it shows
is what a confirmed load does; a dry run rolls back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from django import forms
from django.contrib.postgres.forms import SimpleArrayField
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, transaction
from django.db.models import F, ProtectedError

from loyalty import services as loyalty_services
from loyalty.forms import ProgramAdminForm
from loyalty.models import Program
from notifications.admin_emails import EmailSettingsForm, TemplateEditorForm
from notifications.forms import WebhookEndpointForm
from notifications.models import EmailTemplate, WebhookDelivery
from rewards.models import Reward
from tiers.models import Tier
from tiers.services import tier_order_error
from workflows import builtins
from workflows.admin_automations import AutomationForm
from workflows.forms import EarningRuleForm
from workflows.models import Automation, AutomationRun

from .export import export_document, item_key, objects_of
from .schema import program_schema
from .spec import BY_NAME, REWARD, SECTIONS, TIER, TIERS, Section, ValueInvalid, default_of, from_document

# --------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DocumentInvalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def path_text(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_TYPE_WORDS = {
    "number": "a number",
    "integer": "a whole number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of keys",
    "null": "empty (null)",
}


def _schema_problems(error: jsonschema.ValidationError) -> list[Problem]:
    where = list(error.absolute_path)
    kind, expected = error.validator, error.validator_value
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        return [Problem(path_text([*where, key]), "unknown key") for key in sorted(set(error.instance) - known)]
    if kind == "required":
        missing = [key for key in expected if key not in error.instance]
        return [Problem(path_text([*where, key]), "is required") for key in missing]
    if kind == "type":
        types = expected if isinstance(expected, list) else [expected]
        message = "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    elif kind == "enum":
        message = "must be one of: " + ", ".join(json.dumps(v) for v in expected)
    elif kind == "const":
        message = f"must be {json.dumps(expected)}"
    elif kind == "minimum":
        message = f"must be at least {expected}"
    elif kind == "maxLength":
        message = f"must be at most {expected} characters"
    else:
        message = error.message
    return [Problem(path_text(where), message)]


_VALIDATOR = jsonschema.Draft202012Validator(program_schema())


def schema_problems(document: Any) -> list[Problem]:
    if not isinstance(document, dict):
        return [Problem("", "The document must be a mapping with version: 1 and the sections.")]
    found: list[Problem] = []
    for error in sorted(
        _VALIDATOR.iter_errors(document),
        key=lambda e: [(1, p, "") if isinstance(p, int) else (0, 0, str(p)) for p in e.absolute_path],
    ):
        found.extend(_schema_problems(error))
    return found


# --------------------------------------------------------------------------------------------
# Changes


@dataclass(frozen=True)
class Change:
    section: str
    key: str  # the item's natural key; "" for one-object sections
    field: str  # dotted; "" for a whole item
    action: str  # "added", "removed", "changed", "created"
    old: Any = None
    new: Any = None

    @property
    def where(self) -> str:
        return ".".join(part for part in (self.section, self.key, self.field) if part)

    @property
    def old_text(self) -> str:
        return _value_text(self.old)

    @property
    def new_text(self) -> str:
        return _value_text(self.new)

    def __str__(self) -> str:
        if self.action == "changed":
            return f"{self.where}: {self.old_text} -> {self.new_text}"
        return f"{self.where}: {self.action}"


def _value_text(value: Any, limit: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def _flat(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in item.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _item_changes(section: str, key: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    before, after = _flat(old), _flat(new)
    return [
        Change(section, key, name, "changed", before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


def diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[Change]:
    """What differs between two exports, per section, item (by natural key) and field."""
    changes: list[Change] = []
    if before is None:
        changes.append(Change("program", "", "", "created", new=after["program"]["slug"]))
    for section in SECTIONS:
        new = after[section.name]
        if not section.is_list:
            if before is not None:
                changes.extend(_item_changes(section.name, "", before[section.name], new))
            continue
        old_items = {item_key(section, item): item for item in (before or {}).get(section.name, [])}
        new_items = {item_key(section, item): item for item in new}
        for key in sorted(set(old_items) | set(new_items)):
            if key not in old_items:
                changes.append(Change(section.name, key, "", "added"))
            elif key not in new_items:
                changes.append(Change(section.name, key, "", "removed"))
            else:
                changes.extend(_item_changes(section.name, key, old_items[key], new_items[key]))
    return changes


@dataclass
class LoadResult:
    program: Program
    changes: list[Change]
    created: bool
    dry_run: bool
    deactivated: list[str] = field(default_factory=list)

    def report(self) -> list[str]:
        lines = [str(change) for change in self.changes]
        lines += [
            f"{where}: left out of the document, deactivated (members' history refers to it)"
            for where in self.deactivated
        ]
        return lines


# --------------------------------------------------------------------------------------------
# Loading


def _get(item: dict[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = item
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _form_data(form_class: type[forms.BaseForm], instance: models.Model, m2m: dict[str, list[Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, form_field in form_class.base_fields.items():
        if name in m2m:
            data[name] = [obj.pk for obj in m2m[name]]
            continue
        try:
            model_field = instance._meta.get_field(name)
        except FieldDoesNotExist:  # a form-only field: left empty
            continue
        value = getattr(instance, model_field.attname)
        if isinstance(form_field, SimpleArrayField):
            value = form_field.delimiter.join(str(v) for v in value or [])
        data[name] = "" if value is None else value
    return data


class _Given(forms.Field):
    """A form field whose value the loader has already resolved (the program, tiers by name)."""

    def __init__(self, value: Any) -> None:
        super().__init__(required=False)
        self.value = value

    def clean(self, value: Any) -> Any:
        return self.value


def _given_references(form: forms.ModelForm, instance: models.Model, m2m: dict[str, list[Any]]) -> None:
    """Speed for hundreds of objects: the form's program and tier fields take the objects the
    loader resolved (no query each), and its uniqueness checks are left to the document's own
    (natural keys, built-ins and ready-made automations unique in their list)."""
    for name in form.fields:
        if name == "program":
            form.fields[name] = _Given(instance.program)
        elif name in m2m:
            form.fields[name] = _Given(m2m[name])
        elif name == "set_tier":
            form.fields[name] = _Given(instance.set_tier)
    form.validate_unique = lambda: None
    # The form's model check without the constraint queries (a savepoint and a SELECT each) and
    # without the look-ups of the objects given above.
    given = {"program", "set_tier", *m2m}
    model_clean = type(instance).full_clean

    def full_clean(exclude: Any = None, validate_unique: bool = True, validate_constraints: bool = True) -> None:
        model_clean(instance, exclude={*(exclude or ()), *given}, validate_unique=False, validate_constraints=False)

    instance.full_clean = full_clean


def _stored(instance: models.Model, name: str) -> Any:
    """A field's value as stored: a foreign key's id (no query for the related object)."""
    model_field = instance._meta.get_field(name)
    if model_field.many_to_one:
        return getattr(instance, model_field.attname)
    return getattr(instance, name)


def _same(value: Any) -> Any:
    """A value as compared for "did it change": lists are sets (their order is not meaningful)."""
    return sorted(value) if isinstance(value, list) else value


class _Loader:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.problems: list[Problem] = []
        self.tiers: dict[str, Tier] = {}
        self.rewards: dict[str, Reward] = {}
        self.deactivated: list[str] = []

    # -- problems

    def add(self, section: Section, index: int | None, path: str, message: str) -> None:
        where = section.name if index is None else f"{section.name}[{index}]"
        problem = Problem(f"{where}.{path}" if path else where, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def add_errors(self, sections: list[Section], index: int | None, error_dict: dict[str, list[str]]) -> None:
        """Errors of a form or a model, keyed by model field, placed at the field's path."""
        for name, messages in error_dict.items():
            place = next(
                (
                    (section, f.path)
                    for section in sections
                    for f in section.fields
                    if name in (f.attr, "reward_id" if f.ref == REWARD else f.attr)
                ),
                (sections[0], ""),
            )
            for message in messages:
                self.add(place[0], index, place[1], message)

    # -- values

    def values(
        self, section: Section, index: int | None, item: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, list]]:
        """The model values of one item, and its many-to-many values (lists of objects)."""
        values: dict[str, Any] = {}
        m2m: dict[str, list[Any]] = {}
        for f in section.fields:
            present, raw = _get(item, f.path)
            if f.ref == TIERS:
                names = raw if present else []
                m2m[f.attr] = [self.tiers[name] for name in names if name in self.tiers]
            elif f.ref == TIER:
                values[f.attr] = self.tiers.get(raw) if present and raw else None
            elif f.ref == REWARD:
                values["reward_id"] = self.rewards[raw].pk if present and raw in self.rewards else None
            else:
                model_field = section.model_field(f)
                try:
                    values[f.attr] = from_document(model_field, raw) if present else default_of(model_field)
                except ValueInvalid as exc:
                    self.add(section, index, f.path, str(exc))
        return values, m2m

    def references(self) -> None:
        """Natural keys unique within their list; references naming something in the document."""
        doc = self.document
        names = {
            "tier": {t.get("name") for t in doc.get("tiers", [])},
            "reward": {r.get("code") for r in doc.get("rewards", [])},
        }
        for section in SECTIONS:
            if not section.is_list:
                continue
            seen: dict[str, int] = {}
            unique_too = {"tiers": ("position",), "earning_rules": ("builtin",), "automations": ("ready_made",)}
            for index, item in enumerate(doc.get(section.name, [])):
                key = item_key(section, item)
                if key in seen:
                    self.add(
                        section,
                        index,
                        section.key[-1],
                        f"{section.key[-1]} {key!r} appears twice (also at [{seen[key]}])",
                    )
                seen.setdefault(key, index)
                for f in section.fields:
                    present, raw = _get(item, f.path)
                    if not present or raw in (None, ""):
                        continue
                    if f.ref == TIERS:
                        for i, name in enumerate(raw):
                            if name not in names["tier"]:
                                self.add(section, index, f"{f.path}[{i}]", f"no tier named {name!r} in this document")
                    elif f.ref in (TIER, REWARD) and raw not in names[f.ref]:
                        what = "tier named" if f.ref == TIER else "reward with code"
                        self.add(section, index, f.path, f"no {what} {raw!r} in this document")
            for attr in unique_too.get(section.name, ()):
                taken: dict[Any, int] = {}
                for index, item in enumerate(doc.get(section.name, [])):
                    value = item.get(attr)
                    if value in (None, ""):
                        continue
                    if value in taken:
                        self.add(section, index, attr, f"{attr} {value!r} appears twice (also at [{taken[value]}])")
                    taken.setdefault(value, index)

    # -- one object

    def apply(
        self,
        sections: list[Section],
        index: int | None,
        instance: models.Model,
        items: list[dict[str, Any]],
        *,
        form_class: type[forms.BaseForm] | None = None,
        form_kwargs: dict[str, Any] | None = None,
        list_item: bool = False,
    ) -> bool:
        """Set, check and (when it changed) save one object. True: it was written."""
        values: dict[str, Any] = {}
        m2m: dict[str, list[Any]] = {}
        for section, item in zip(sections, items, strict=True):
            more, more_m2m = self.values(section, index, item)
            values.update(more)
            m2m.update(more_m2m)
        before = {name: _stored(instance, name) for name in values}
        before_m2m = {name: sorted(o.pk for o in getattr(instance, name).all()) if instance.pk else [] for name in m2m}
        for name, value in values.items():
            setattr(instance, name, value)
        problems_before = len(self.problems)
        # The program is ours; tiers are checked as references (by name, in the document).
        checked: set[str] = {"program", *m2m, *(f.attr for sec in sections for f in sec.fields if f.ref == TIER)}
        if form_class is not None:
            if issubclass(form_class, forms.ModelForm):
                form = form_class(data=_form_data(form_class, instance, m2m), instance=instance, **(form_kwargs or {}))
                if list_item:
                    _given_references(form, instance, m2m)
            else:
                form = form_class(
                    data={name: values.get(name, "") for name in form_class.base_fields}, **(form_kwargs or {})
                )
            if isinstance(form, forms.ModelForm):
                checked.update(form.base_fields)  # the form ran the model's checks of its fields
            if not form.is_valid():
                errors = form.errors.get_json_data()
                self.add_errors(
                    sections,
                    index,
                    {name: [e["message"] for e in found] for name, found in errors.items() if name != "__all__"},
                )
                for error in errors.get("__all__", []):
                    self.add(sections[0], index, "", error["message"])
        instance.__dict__.pop("full_clean", None)  # the form's faster check (`_given_references`) is done
        try:
            instance.full_clean(exclude=sorted(checked), validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            self.add_errors(sections, index, exc.message_dict)
        issued = getattr(instance, "issued_count", 0)
        if getattr(instance, "stock", None) is not None and instance.stock < issued:
            self.add(sections[0], index, "stock", f"must be at least the {issued} coupons issued and not cancelled")
        if len(self.problems) > problems_before:
            return False
        changed = instance.pk is None or any(
            _same(_stored(instance, name)) != _same(old) for name, old in before.items()
        )
        if changed:
            instance.save()
        for name, objects in m2m.items():
            if sorted(o.pk for o in objects) != before_m2m[name]:
                getattr(instance, name).set(objects)
                changed = True
        return changed

    # -- sections

    def program(self, slug: str) -> tuple[Program, bool]:
        sections = [BY_NAME["program"], BY_NAME["branding"]]
        items = [self.document["program"], self.document.get("branding", {})]
        program = Program.objects.select_for_update().filter(slug=slug).first()
        created = program is None
        if created:
            values: dict[str, Any] = {}
            for section, item in zip(sections, items, strict=True):
                values.update(self.values(section, None, item)[0])
            form = ProgramAdminForm(data=_form_data(ProgramAdminForm, Program(**values), {}))
            if not form.is_valid():
                errors = form.errors.get_json_data()
                self.add_errors(sections, None, {name: [e["message"] for e in found] for name, found in errors.items()})
                raise DocumentInvalid(self.problems)
            extra = {name: value for name, value in values.items() if name not in form.cleaned_data}
            try:
                program = loyalty_services.program_create(**{**form.cleaned_data, **extra})
            except ValidationError as exc:
                self.add_errors(sections, None, exc.message_dict)
                raise DocumentInvalid(self.problems) from exc
            builtins.builtin_rules_install(program=program)  # now, not after the commit: the file decides them
        else:
            self.apply(sections, None, program, items, form_class=ProgramAdminForm)
        return program, created

    def list_section(
        self,
        name: str,
        program: Program,
        existing: list[models.Model],
        *,
        match: Any = None,
        form_class: type[forms.BaseForm] | None = None,
        form_kwargs: Any = None,
    ) -> tuple[dict[str, models.Model], list[models.Model]]:
        """Apply every item of a list section; returns the objects by key and those left out."""
        section = BY_NAME[name]
        by_key = {item_key(section, _export_key_item(section, obj)): obj for obj in existing}
        kept: dict[str, models.Model] = {}
        for index, item in enumerate(self.document.get(name, [])):
            key = item_key(section, item)
            obj = by_key.pop(key, None) or (match(item, by_key) if match else None)
            if obj is None:
                obj = section.model(program=program)
            else:
                obj.program = program  # the same object: no query when a check reads it
            kwargs = form_kwargs(item) if callable(form_kwargs) else None
            self.apply([section], index, obj, [item], form_class=form_class, form_kwargs=kwargs, list_item=True)
            kept[key] = obj
        return kept, list(by_key.values())

    def retire(self, section: Section, obj: models.Model, history: bool) -> None:
        """A left-out object: deleted, or deactivated when members' history refers to it."""
        if not history:
            try:
                with transaction.atomic():
                    obj.delete()
                return
            except ProtectedError:
                pass
        if obj.is_active:
            self.deactivated.append(f"{section.name}.{item_key(section, _export_key_item(section, obj))}")
            obj.is_active = False
            obj.save(update_fields=["is_active"])


def _export_key_item(section: Section, obj: models.Model) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in section.key}


def _tiers_make_room(program: Program, document: dict[str, Any]) -> None:
    """Move the tiers whose position the document changes or takes out of the way, so that
    the unique (program, position) holds while the tiers are written one by one."""
    wanted = {t.get("name"): t.get("position") for t in document.get("tiers", [])}
    taken = set(wanted.values())
    moving = [
        t.pk
        for t in Tier.objects.filter(program=program)
        if (t.name in wanted and wanted[t.name] != t.position) or (t.name not in wanted and t.position in taken)
    ]
    if moving:
        Tier.objects.filter(pk__in=moving).update(position=F("position") + 20000)


def _settle_tier_positions(program: Program) -> None:
    top = max([t.position for t in Tier.objects.filter(program=program, position__lt=20000)], default=0)
    for tier in Tier.objects.filter(program=program, position__gte=20000).order_by("position"):
        top += 1
        tier.position = top
        tier.save(update_fields=["position"])


def load_document(document: Any, *, slug: str | None = None, dry_run: bool = False) -> LoadResult:
    """Check `document` and make the program it describes (or `slug`) match it, atomically.
    Raises DocumentInvalid (nothing written) with every problem found."""
    problems = schema_problems(document)
    if problems:
        raise DocumentInvalid(problems)
    if slug:
        document = {**document, "program": {**document["program"], "slug": slug}}
    loader = _Loader(document)
    loader.references()
    if loader.problems:
        raise DocumentInvalid(loader.problems)
    with transaction.atomic():
        existing_program = Program.objects.select_for_update().filter(slug=document["program"]["slug"]).first()
        before = export_document(existing_program) if existing_program else None
        program, created = loader.program(document["program"]["slug"])
        objects = objects_of(program)

        _tiers_make_room(program, document)
        loader.tiers, old_tiers = loader.list_section("tiers", program, objects["tiers"])
        for index, item in enumerate(document.get("tiers", [])):
            tier = loader.tiers.get(item.get("name"))
            if tier is not None and tier.pk and tier.is_active:
                problem = tier_order_error(
                    program_id=program.pk, position=tier.position, threshold=tier.threshold, exclude_id=tier.pk
                )
                if problem:
                    loader.add(BY_NAME["tiers"], index, "threshold", problem)
        loader.rewards, old_rewards = loader.list_section("rewards", program, objects["rewards"])
        loader.apply([BY_NAME["coupon_policy"]], None, objects["coupon_policy"], [document.get("coupon_policy", {})])

        def same_builtin(item: dict[str, Any], left: dict[str, models.Model]) -> models.Model | None:
            for key, rule in list(left.items()):
                if item.get("builtin") and rule.builtin == item.get("builtin"):
                    return left.pop(key)
            return None

        _rules, old_rules = loader.list_section(
            "earning_rules", program, objects["earning_rules"], match=same_builtin, form_class=EarningRuleForm
        )
        loader.apply([BY_NAME["referrals"]], None, objects["referrals"], [document.get("referrals", {})])
        loader.apply([BY_NAME["fraud_limits"]], None, objects["fraud_limits"], [document.get("fraud_limits", {})])
        _automations, old_automations = loader.list_section(
            "automations", program, objects["automations"], form_class=AutomationForm
        )
        loader.apply([BY_NAME["budget"]], None, objects["budget"], [document.get("budget", {})])
        settings_row = objects["email_settings"]
        loader.apply(
            [BY_NAME["email_settings"]],
            None,
            settings_row,
            [document.get("email_settings", {})],
            form_class=EmailSettingsForm,
        )
        _templates, old_templates = loader.list_section(
            "email_templates",
            program,
            objects["email_templates"],
            form_class=TemplateEditorForm,
            form_kwargs=lambda item: {"kind": item.get("kind")},
        )
        _endpoints, old_endpoints = loader.list_section(
            "webhook_endpoints", program, objects["webhook_endpoints"], form_class=WebhookEndpointForm
        )
        if loader.problems:
            raise DocumentInvalid(loader.problems)

        for automation in old_automations:
            loader.retire(
                BY_NAME["automations"], automation, AutomationRun.objects.filter(automation=automation).exists()
            )
        for rule in old_rules:
            loader.retire(BY_NAME["earning_rules"], rule, bool(rule.builtin))
        for reward in old_rewards:
            loader.retire(
                BY_NAME["rewards"], reward, Automation.objects.filter(program=program, reward_id=reward.pk).exists()
            )
        for endpoint in old_endpoints:
            loader.retire(
                BY_NAME["webhook_endpoints"], endpoint, WebhookDelivery.objects.filter(endpoint=endpoint).exists()
            )
        EmailTemplate.objects.filter(pk__in=[t.pk for t in old_templates]).delete()
        for tier in old_tiers:
            loader.retire(BY_NAME["tiers"], tier, False)
        _settle_tier_positions(program)

        after = export_document(program)
        result = LoadResult(program, diff(before, after), created, dry_run, loader.deactivated)
        if dry_run:
            transaction.set_rollback(True)
    return result
