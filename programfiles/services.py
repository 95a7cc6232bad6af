"""Writes of drafts and versions (docs/drafts.md). Every write owns its transaction; a draft
is plain data until it is published, so editing one never changes what members earn.

- `draft_start`: a new draft from the live program (one open draft per program);
- `draft_item_save` / `draft_item_remove` / `draft_sections_replace`: edit the draft; each
  edit is checked like a program file (a dry run of loading the draft's whole document), so a
  draft always publishes;
- `draft_publish`: the draft goes live in one transaction through `load_document`, and a
  `ProgramVersion` records who, when, the note and the changes; a stale draft is refused;
- `draft_rebase`: a stale draft's edits replayed on the live configuration as it is now;
- `draft_discard`, `version_restore` (an earlier version's sections as a new draft).
Publishing, restoring and discarding are written to the staff audit trail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from loyalty import errors
from loyalty.models import Program, StaffAction
from loyalty.services import staff_action_record

from .export import export_document, item_key
from .loading import Change, DocumentInvalid, Problem, load_document
from .models import DRAFT_SECTIONS, ProgramDraft, ProgramVersion
from .selectors import draft_document, draft_live_changes, sections_of
from .spec import BY_NAME


class DraftStale(errors.Conflict):
    """The live configuration changed since the draft was taken; `changes` says how."""

    code = "draft_stale"

    def __init__(self, changes: list[Change]) -> None:
        super().__init__(
            "The live configuration changed since this draft was taken: publishing it would undo "
            f"{len(changes)} change(s) made since. Update the draft to the live configuration (your edits are "
            "kept), then publish it.",
        )
        self.changes = changes


class DraftClosed(errors.Conflict):
    code = "draft_closed"


class DraftConflict(errors.Conflict):
    """Items both the draft and the live program changed since the draft was taken."""

    code = "draft_conflict"

    def __init__(self, items: list[str]) -> None:
        super().__init__(
            "Not updated: the draft and the live configuration both changed "
            + ", ".join(items)
            + ". Make these changes again in a new draft.",
            items=items,
        )
        self.items = items


def _lock_program(program: Program) -> Program:
    # Every draft write of a program takes the program row first: publishes (and a publish and
    # a start or restore) of one program run one after the other.
    return Program.objects.select_for_update().get(pk=program.pk)


def _lock_open_draft(draft: ProgramDraft) -> ProgramDraft:
    locked = ProgramDraft.objects.select_for_update().select_related("program").get(pk=draft.pk)
    if locked.status != ProgramDraft.Status.OPEN:
        raise DraftClosed(f"This draft was already {locked.get_status_display().lower()}; nothing was changed.")
    return locked


def _no_open_draft(program: Program) -> None:
    found = ProgramDraft.objects.filter(program=program, status=ProgramDraft.Status.OPEN).first()
    if found is not None:
        raise errors.Conflict(
            f"{program} already has an open draft (#{found.pk}): publish or discard it first.", draft=found.pk
        )


@transaction.atomic
def draft_start(*, program: Program, actor: Any, now: dt.datetime | None = None) -> ProgramDraft:
    """A new open draft holding the live tiers, rewards, earning rules and automations."""
    now = now or timezone.now()
    program = _lock_program(program)
    _no_open_draft(program)
    live = sections_of(export_document(program))
    return ProgramDraft.objects.create(
        program=program, sections=live, base=live, created_by=actor, created_at=now, updated_by=actor, updated_at=now
    )


def _checked(draft: ProgramDraft, sections: dict[str, Any]) -> None:
    """Refuse sections that would not publish: the draft's whole document goes through a dry
    run of `load_document` (schema, references, the admin's forms and model checks)."""
    live = export_document(draft.program)
    load_document({**live, **sections}, slug=draft.program.slug, dry_run=True)


def _saved(draft: ProgramDraft, sections: dict[str, Any], actor: Any, now: dt.datetime | None) -> ProgramDraft:
    _checked(draft, sections)
    draft.sections = sections
    draft.updated_by = actor
    draft.updated_at = now or timezone.now()
    draft.save(update_fields=["sections", "updated_by", "updated_at"])
    return draft


def unique_code(items: list[dict[str, Any]], name: str, fallback: str) -> str:
    """A new item's code from its name, `-2`, `-3` on a clash (as the models make it)."""
    taken = {item.get("code") for item in items}
    base = slugify(name)[:40] or fallback
    code, n = base, 1
    while code in taken:
        n += 1
        code = f"{base}-{n}"
    return code


@transaction.atomic
def draft_item_save(
    *,
    draft: ProgramDraft,
    section: str,
    key: str | None,
    item: dict[str, Any],
    actor: Any,
    now: dt.datetime | None = None,
) -> ProgramDraft:
    """Put `item` in the draft's `section`, in place of the item keyed `key` (None: a new one).
    Raises DocumentInvalid (nothing saved) when the draft would not publish."""
    if section not in DRAFT_SECTIONS:
        raise errors.InvalidInput(f"Drafts hold {', '.join(DRAFT_SECTIONS)}, not {section!r}.", field="section")
    draft = _lock_open_draft(draft)
    spec = BY_NAME[section]
    items = list(draft.sections.get(section, []))
    index = next((i for i, old in enumerate(items) if item_key(spec, old) == key), None) if key else None
    if key and index is None:
        raise errors.NotFound(f"The draft has no {spec.title.lower()} {key!r}.")
    new_key = item_key(spec, item)
    clash = next((i for i, old in enumerate(items) if item_key(spec, old) == new_key), None)
    if clash is not None and clash != index:
        field = spec.key[-1]
        raise DocumentInvalid([Problem(f"{section}[{clash}].{field}", f"{field} {new_key!r} is already in the draft")])
    if index is None:
        items.append(item)
    else:
        items[index] = item
    items.sort(key=lambda it: item_key(spec, it))
    return _saved(draft, {**draft.sections, section: items}, actor, now)


@transaction.atomic
def draft_item_remove(
    *, draft: ProgramDraft, section: str, key: str, actor: Any, now: dt.datetime | None = None
) -> ProgramDraft:
    """Take an item out of the draft (publishing then deletes it, or deactivates it when
    members' history refers to it, as loading a program file does)."""
    draft = _lock_open_draft(draft)
    if section not in DRAFT_SECTIONS:
        raise errors.InvalidInput(f"Drafts hold {', '.join(DRAFT_SECTIONS)}, not {section!r}.", field="section")
    spec = BY_NAME[section]
    items = [old for old in draft.sections.get(section, []) if item_key(spec, old) != key]
    if len(items) == len(draft.sections.get(section, [])):
        raise errors.NotFound(f"The draft has no {spec.title.lower()} {key!r}.")
    return _saved(draft, {**draft.sections, section: items}, actor, now)


@transaction.atomic
def draft_sections_replace(
    *, draft: ProgramDraft, document: Any, actor: Any, now: dt.datetime | None = None
) -> ProgramDraft:
    """The draft's sections from an edited document ("Edit as YAML"): only the draft-able
    sections are read; any other key is refused."""
    draft = _lock_open_draft(draft)
    if not isinstance(document, dict):
        raise DocumentInvalid([Problem("", "The text must be a mapping of sections.")])
    extra = sorted(set(document) - set(DRAFT_SECTIONS) - {"version"})
    if extra:
        raise DocumentInvalid(
            [
                Problem(name, "not part of a draft (a draft holds tiers, rewards, earning_rules, automations)")
                for name in extra
            ]
        )
    return _saved(draft, sections_of(document), actor, now)


def _merged(draft: ProgramDraft, live: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The draft's edits replayed on the live sections, item by item: an item the draft
    changed (or added, or removed) since its base keeps the draft's version, any other item
    takes the live one. An item both changed differently is a conflict."""
    merged: dict[str, Any] = {}
    conflicts: list[str] = []
    for name in DRAFT_SECTIONS:
        spec = BY_NAME[name]
        base = {item_key(spec, it): it for it in draft.base.get(name, [])}
        mine = {item_key(spec, it): it for it in draft.sections.get(name, [])}
        theirs = {item_key(spec, it): it for it in live.get(name, [])}
        items = []
        for key in sorted(set(base) | set(mine) | set(theirs)):
            was, ours, now_live = base.get(key), mine.get(key), theirs.get(key)
            chosen = now_live
            if ours != was:
                if now_live not in (was, ours):
                    conflicts.append(f"{name}.{key}")
                chosen = ours
            if chosen is not None:
                items.append(chosen)
        merged[name] = items
    return merged, conflicts


@transaction.atomic
def draft_rebase(*, draft: ProgramDraft, actor: Any, now: dt.datetime | None = None) -> ProgramDraft:
    """Bring a stale draft up to date: its edits on top of the live configuration as it is now
    (`_merged`), and the live sections as its new base. Raises DraftConflict (nothing saved)
    when the draft and the live program changed the same item, DocumentInvalid when the result
    would not publish."""
    program = _lock_program(draft.program)
    draft = _lock_open_draft(draft)
    live = sections_of(export_document(program))
    merged, conflicts = _merged(draft, live)
    if conflicts:
        raise DraftConflict(conflicts)
    _checked(draft, merged)
    draft.sections, draft.base = merged, live
    draft.updated_by, draft.updated_at = actor, now or timezone.now()
    draft.save(update_fields=["sections", "base", "updated_by", "updated_at"])
    return draft


@transaction.atomic
def draft_discard(*, draft: ProgramDraft, actor: Any, now: dt.datetime | None = None) -> ProgramDraft:
    now = now or timezone.now()
    draft = _lock_open_draft(draft)
    draft.status, draft.closed_at, draft.updated_by, draft.updated_at = ProgramDraft.Status.DISCARDED, now, actor, now
    draft.save(update_fields=["status", "closed_at", "updated_by", "updated_at"])
    staff_action_record(
        actor=actor,
        action=StaffAction.Action.DRAFT_DISCARD,
        program=draft.program,
        details={"draft": draft.pk},
        now=now,
    )
    return draft


@transaction.atomic
def draft_publish(*, draft: ProgramDraft, actor: Any, note: str = "", now: dt.datetime | None = None) -> ProgramVersion:
    """Make the draft live, all or nothing, and record the version. The program row is locked
    first, so two publishes of one draft publish once (the second finds it published:
    `DraftClosed`). Refusals, nothing written: `DraftStale` (the live configuration changed
    since the draft was taken), `DocumentInvalid`."""
    now = now or timezone.now()
    program = _lock_program(draft.program)
    draft = _lock_open_draft(draft)
    live = export_document(program)
    stale = draft_live_changes(draft, live)
    if stale:
        raise DraftStale(stale)
    result = load_document(draft_document(draft, live), slug=program.slug)
    number = (ProgramVersion.objects.filter(program=program).aggregate(top=Max("number"))["top"] or 0) + 1
    version = ProgramVersion.objects.create(
        program=program,
        number=number,
        document=export_document(program),
        changes=[asdict(change) for change in result.changes],
        note=note.strip()[:255],
        draft=draft,
        published_by=actor,
        published_at=now,
    )
    draft.status, draft.closed_at, draft.updated_by, draft.updated_at = ProgramDraft.Status.PUBLISHED, now, actor, now
    draft.note = version.note
    draft.save(update_fields=["status", "closed_at", "updated_by", "updated_at", "note"])
    staff_action_record(
        actor=actor,
        action=StaffAction.Action.DRAFT_PUBLISH,
        program=program,
        reason=version.note,
        details={
            "draft": draft.pk,
            "version": number,
            "changes": [str(change) for change in result.changes][:200],
            "deactivated": result.deactivated,
        },
        now=now,
    )
    return version


@transaction.atomic
def version_restore(*, version: ProgramVersion, actor: Any, now: dt.datetime | None = None) -> ProgramDraft:
    """A new open draft holding what `version` published (its tiers, rewards, earning rules
    and automations); publishing that draft makes them live again."""
    now = now or timezone.now()
    program = _lock_program(version.program)
    _no_open_draft(program)
    live = sections_of(export_document(program))
    draft = ProgramDraft.objects.create(
        program=program,
        sections=sections_of(version.document),
        base=live,
        restored_from=version,
        created_by=actor,
        created_at=now,
        updated_by=actor,
        updated_at=now,
    )
    staff_action_record(
        actor=actor,
        action=StaffAction.Action.VERSION_RESTORE,
        program=program,
        details={"version": version.number, "draft": draft.pk},
        now=now,
    )
    return draft
