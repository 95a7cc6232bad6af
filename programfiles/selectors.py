"""Reads of drafts and versions (docs/drafts.md): the draft as a whole program document, its
changes against the live program, whether it is stale, and its earning rules as unsaved
`EarningRule` objects for `workflows.rules.evaluate` (the simulation replays a draft with them).
"""

from __future__ import annotations

from typing import Any

from loyalty import errors
from loyalty.models import Program
from tiers.models import Tier
from workflows.models import EarningRule

from .export import export_document
from .loading import Change, diff
from .models import DRAFT_SECTIONS, ProgramDraft, ProgramVersion
from .spec import BY_NAME, TIER, TIERS, from_document


def sections_of(document: dict[str, Any]) -> dict[str, Any]:
    """The draft-able sections of a whole document."""
    return {name: document.get(name, []) for name in DRAFT_SECTIONS}


def draft_open(program: Program | int) -> ProgramDraft | None:
    program_id = program.pk if isinstance(program, Program) else program
    return ProgramDraft.objects.filter(program_id=program_id, status=ProgramDraft.Status.OPEN).first()


def draft_document(draft: ProgramDraft, live: dict[str, Any] | None = None) -> dict[str, Any]:
    """The program's whole document as publishing `draft` would make it: the live document
    with the draft's sections in place of the live ones."""
    live = live if live is not None else export_document(draft.program)
    return {**live, **sections_of(draft.sections)}


def draft_changes(draft: ProgramDraft, live: dict[str, Any] | None = None) -> list[Change]:
    """What publishing `draft` would change, field by field (live -> draft)."""
    live = live if live is not None else export_document(draft.program)
    return diff(live, draft_document(draft, live))


def draft_live_changes(draft: ProgramDraft, live: dict[str, Any] | None = None) -> list[Change]:
    """What changed in the live program's draft-able sections since the draft was taken
    (empty: the draft is current). Such a draft is stale: publishing it would undo these."""
    live = live if live is not None else export_document(draft.program)
    return diff({**live, **sections_of(draft.base)}, live)


def version_changes(version: ProgramVersion) -> list[Change]:
    return [Change(**change) for change in version.changes]


def versions_of(program: Program) -> list[ProgramVersion]:
    return list(ProgramVersion.objects.filter(program=program).select_related("published_by").order_by("-number"))


# Tier ids a draft rule's tier condition uses for a tier that exists only in the draft: no
# member is in it yet, so the condition must fail for everyone (an empty set would mean "any").
DRAFT_ONLY_TIER = -1


def draft_rules(program: Program, *, draft: ProgramDraft | None = None) -> list[EarningRule]:
    """The earning rules of `program`'s open draft (or of `draft`) as unsaved `EarningRule`
    objects, ready for `workflows.rules.evaluate`: every rule of the draft (inactive ones too;
    `evaluate` skips them), each with `tier_ids` like `workflows.selectors.active_rules`.

    A rule that exists live (same code) carries the live rule's id, so the caps count what
    the live rule already gave (`Usage` is keyed by rule id); a new rule's id is None. These
    objects are read-only stand-ins: never save them. Raises `errors.NotFound` when the
    program has no open draft.
    """
    draft = draft or draft_open(program)
    if draft is None or draft.program_id != program.pk:
        raise errors.NotFound(f"{program} has no open draft.")
    section = BY_NAME["earning_rules"]
    live_ids = dict(EarningRule.objects.filter(program=program).values_list("code", "id"))
    tier_ids = dict(Tier.objects.filter(program=program).values_list("name", "id"))
    rules = []
    for item in sections_of(draft.sections)["earning_rules"]:
        values: dict[str, Any] = {}
        names: list[str] = []
        for f in section.fields:
            node: Any = item
            for part in f.path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if f.ref == TIERS:
                names = list(node or [])
            elif f.ref != TIER and node is not None:
                values[f.attr] = from_document(section.model_field(f), node)
        rule = EarningRule(program=program, **values)
        rule.id = live_ids.get(rule.code)
        rule.tier_ids = frozenset(tier_ids.get(name, DRAFT_ONLY_TIER) for name in names)
        rules.append(rule)
    return sorted(rules, key=lambda r: (-r.priority, r.id or 0))
