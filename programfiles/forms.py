"""The forms staff edit a draft with (docs/drafts.md): one per draft-able section, built from
the program file's field table (`spec.SECTIONS`), with the labels, help texts and widgets of
the live admin's forms (days as check boxes, lists comma-separated), and tiers and rewards
picked by name among the draft's own. A form turns its values into a document item; the
draft's service checks the whole draft like a program file before it keeps the change.
"""

from __future__ import annotations

import copy
from typing import Any

from django import forms

from workflows.admin_automations import AutomationForm
from workflows.forms import EarningRuleForm

from .export import _set
from .loading import Problem
from .spec import BY_NAME, REWARD, TIER, TIERS, Field, Section, from_document, to_document

# Fields a draft does not edit: the code names the item (renaming it is a removal and an
# addition), built-in rules and ready-made automations keep what they are.
FIXED = {"code", "builtin", "ready_made"}

# Fields of the live admin's forms whose widget or parsing suits a manager better than the
# model's default form field.
ADMIN_FIELDS = {"earning_rules": EarningRuleForm.base_fields, "automations": AutomationForm.base_fields}

GROUP_TITLES = {"": "", "conditions": "Conditions", "campaign": "Campaign dates", "caps": "Caps", "actions": "Actions"}


def field_name(f: Field) -> str:
    return f.path.replace(".", "__")


def _get(item: dict[str, Any], path: str) -> Any:
    node: Any = item
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _choice_field(f: Field, names: list[str], label: str) -> forms.Field:
    choices = [(name, name) for name in names]
    if f.ref == TIERS:
        return forms.MultipleChoiceField(
            choices=choices,
            required=False,
            widget=forms.CheckboxSelectMultiple,
            label=label,
            help_text="The member is in one of these tiers (none ticked: any tier or none).",
        )
    return forms.ChoiceField(choices=[("", "---------"), *choices], required=False, label=label)


class DraftItemForm(forms.Form):
    """One tier, reward, earning rule or automation of a draft."""

    def __init__(
        self,
        *args: Any,
        section: str,
        sections: dict[str, Any],
        item: dict[str, Any] | None,
        zone: str = "",
        **kwargs: Any,
    ):
        self.section: Section = BY_NAME[section]
        self.item = item or {}
        initial = {}
        for f in self.section.fields:
            if f.attr in FIXED:
                continue
            raw = _get(self.item, f.path)
            if raw is not None and not f.ref:
                raw = from_document(self.section.model_field(f), raw)
            initial[field_name(f)] = raw
        super().__init__(*args, initial=initial if item else None, **kwargs)
        tier_names = [t["name"] for t in sorted(sections.get("tiers", []), key=lambda t: t.get("position", 0))]
        reward_codes = sorted(r["code"] for r in sections.get("rewards", []))
        admin_fields = ADMIN_FIELDS.get(section, {})
        for f in self.section.fields:
            if f.attr in FIXED and not (f.attr == "code" and item is None):
                continue
            model_field = self.section.model_field(f)
            label = str(model_field.verbose_name).capitalize() if f.ref != REWARD else "Reward"
            if f.ref in (TIER, TIERS):
                form_field = _choice_field(f, tier_names, label)
            elif f.ref == REWARD:
                form_field = _choice_field(f, reward_codes, label)
            elif f.attr in admin_fields and f.attr not in ("tiers", "set_tier"):
                form_field = copy.deepcopy(admin_fields[f.attr])
            else:
                form_field = model_field.formfield()
            if not form_field.label:
                form_field.label = label
            if isinstance(form_field, forms.DateTimeField) and zone:
                form_field.help_text = f"{form_field.help_text} Time zone: {zone}.".strip()
            if f.attr == "code":
                form_field.required = False
                form_field.help_text = "Empty: made from the name. It names the item in program files."
            self.fields[field_name(f)] = form_field
        if not item:
            for f in self.section.fields:  # a new item starts with the model's defaults
                if field_name(f) in self.fields and not f.ref and model_field_default(self.section, f) is not None:
                    self.fields[field_name(f)].initial = model_field_default(self.section, f)

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The fields under their headings (the document's groups: conditions, caps...)."""
        grouped: dict[str, list[forms.BoundField]] = {}
        for f in self.section.fields:
            if field_name(f) in self.fields:
                group = f.path.split(".")[0] if "." in f.path else ""
                grouped.setdefault(GROUP_TITLES.get(group, group.capitalize()), []).append(self[field_name(f)])
        return list(grouped.items())

    def to_item(self) -> dict[str, Any]:
        """The edited item as document data (the fields the form does not show kept as they were)."""
        item: dict[str, Any] = copy.deepcopy(self.item)
        for f in self.section.fields:
            name = field_name(f)
            if name not in self.cleaned_data:
                continue
            value = self.cleaned_data[name]
            if f.ref == TIERS:
                value = sorted(value or [])
            elif f.ref in (TIER, REWARD):
                value = value or None
            else:
                value = to_document(self.section.model_field(f), value)
            _set(item, f.path, value)
        return item

    def add_problems(self, problems: list[Problem], index: int) -> None:
        """A refused draft's problems: those of this item at their fields, the rest on top."""
        prefix = f"{self.section.name}[{index}]"
        paths = {f.path: field_name(f) for f in self.section.fields if field_name(f) in self.fields}
        for problem in problems:
            place = None
            if problem.path.startswith(prefix + "."):
                rest = problem.path[len(prefix) + 1 :].split("[")[0]
                place = paths.get(rest)
            elif problem.path.startswith(prefix) or not problem.path:
                self.add_error(None, problem.message)
                continue
            if place:
                self.add_error(place, problem.message)
            else:
                self.add_error(None, str(problem))


def model_field_default(section: Section, f: Field) -> Any:
    model_field = section.model_field(f)
    return model_field.get_default() if model_field.has_default() else None


class PublishForm(forms.Form):
    note = forms.CharField(
        max_length=255,
        required=False,
        label="Note",
        help_text="What this change is and why, for the version history (e.g. 'Double points weekend in March').",
        widget=forms.TextInput(attrs={"size": 80}),
    )


class YamlForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 30, "cols": 110, "spellcheck": "false", "class": "vLargeTextField"}),
        label="The draft as YAML",
        help_text="Tiers, rewards, earning rules and automations in the program-file format (docs/program-files.md).",
    )
