"""A program file's earning rules as unsaved `EarningRule` instances, for the replay
(docs/simulation.md): nothing is written; the rules are checked as the load checks them (the
JSON Schema, each rule's own validation, tiers named by name), with the path of a problem."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from loyalty.models import Program
from tiers.models import Tier
from workflows.models import EarningRule

from .loading import DocumentInvalid, Problem, _get, path_text, schema_problems
from .spec import BY_NAME, TIERS, ValueInvalid, default_of, from_document

SECTION = BY_NAME["earning_rules"]


def rules_from_document(*, program: Program, document: Any) -> list[EarningRule]:
    """The document's earning rules for `program`, unsaved, each with `tier_ids` (its tier
    condition, by the program's tier names). `DocumentInvalid` lists every problem by path."""
    problems = schema_problems(document)
    if problems:
        raise DocumentInvalid(problems)
    tiers = dict(Tier.objects.filter(program=program).values_list("name", "id"))
    found: list[EarningRule] = []
    for index, item in enumerate(document.get(SECTION.name) or []):
        where = [SECTION.name, index]
        rule = EarningRule(program=program)
        tier_ids: frozenset[int] = frozenset()
        for f in SECTION.fields:
            present, value = _get(item, f.path)
            if f.ref == TIERS:
                names = value or []
                unknown = [n for n in names if n not in tiers]
                if unknown:
                    problems.append(Problem(path_text([*where, *f.path.split(".")]), f"no tier named {unknown[0]!r}"))
                tier_ids = frozenset(tiers[n] for n in names if n in tiers)
                continue
            model_field = SECTION.model_field(f)
            try:
                setattr(rule, f.attr, from_document(model_field, value) if present else default_of(model_field))
            except ValueInvalid as exc:
                problems.append(Problem(path_text([*where, *f.path.split(".")]), str(exc)))
        try:
            rule.clean_fields(exclude=["program", "code"])
            rule.clean()
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                problems.append(Problem(path_text([*where, name]), " ".join(messages)))
        rule.tier_ids = tier_ids
        found.append(rule)
    if problems:
        raise DocumentInvalid(problems)
    return found
