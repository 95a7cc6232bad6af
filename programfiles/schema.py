"""The JSON Schema of program files, made from the section table (`spec.SECTIONS`) and the
models' fields: docs/program.schema.json is its output (`export_program --schema`), and a test
checks that the committed file equals it."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models

from .spec import REWARD, SECTIONS, TIER, TIERS, VERSION, Field, Section

SCHEMA_ID = "https://example.invalid/loyalty/program.schema.json"

_INTEGERS = (models.IntegerField, models.BigIntegerField, models.SmallIntegerField)
_POSITIVE = (models.PositiveIntegerField, models.PositiveSmallIntegerField, models.PositiveBigIntegerField)


def _scalar(model_field: models.Field) -> dict[str, Any]:
    if isinstance(model_field, models.BooleanField):
        out: dict[str, Any] = {"type": "boolean"}
    elif isinstance(model_field, models.DecimalField):
        out = {"type": "number"}
        if any(getattr(v, "limit_value", None) is not None and v.code == "min_value" for v in model_field.validators):
            out["minimum"] = 0
    elif isinstance(model_field, _POSITIVE) or (isinstance(model_field, _INTEGERS) and model_field.choices):
        out = {"type": "integer", "minimum": 0}
    elif isinstance(model_field, _INTEGERS):
        out = {"type": "integer"}
    elif isinstance(model_field, models.DateTimeField):
        out = {"type": "string", "format": "date-time"}
    else:
        out = {"type": "string"}
        if model_field.max_length:
            out["maxLength"] = model_field.max_length
    if model_field.choices:
        out["enum"] = [value for value, _label in model_field.flatchoices]
        if model_field.blank and "" not in out["enum"] and out["type"] == "string":
            out["enum"].append("")
    return out


def field_schema(section: Section, f: Field) -> dict[str, Any]:
    if f.ref == TIERS:
        return {"type": "array", "items": {"type": "string", "description": "a tier's name"}}
    if f.ref in (TIER, REWARD):
        what = "a tier's name" if f.ref == TIER else "a reward's code"
        return {"type": ["string", "null"], "description": what}
    model_field = section.model_field(f)
    if isinstance(model_field, ArrayField):
        return {"type": "array", "items": _scalar(model_field.base_field)}
    out = _scalar(model_field)
    if model_field.null:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if model_field.help_text:
        out["description"] = str(model_field.help_text)
    return out


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = required
    return out


def section_schema(section: Section) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f in section.fields:
        *groups, last = f.path.split(".")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[last] = field_schema(section, f)

    def build(node: dict[str, Any], top: bool) -> dict[str, Any]:
        properties = {
            name: (build(value, False) if "type" not in value else value) for name, value in sorted(node.items())
        }
        required = (
            list(section.key)
            if top and section.key
            else (["slug", "name"] if top and section.name == "program" else None)
        )
        return _object(properties, required)

    item = build(tree, True)
    if section.is_list:
        return {
            "type": "array",
            "items": item,
            "description": f"{section.title}, sorted by {' and '.join(section.key)}.",
        }
    item["description"] = section.title
    return item


def program_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {"version": {"const": VERSION, "description": "The format's version."}}
    for section in SECTIONS:
        properties[section.name] = section_schema(section)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Loyalty program file",
        "description": "A program's whole configuration (docs/program-files.md). Unknown keys are refused; "
        "a key left out takes the model's default.",
        **_object(properties, ["version", "program"]),
    }


def schema_text() -> str:
    return json.dumps(program_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
