"""The drafts part of `manage.py load_demo` (run on `demo_loaded`, after the rules, tiers and
rewards), once per program: one published version (reviews earn 25 beans instead of 20) and
an open draft with a "Double points weekend" campaign and store visits at 10 beans, so the
admin shows a live configuration, its history and a pending change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from loyalty.models import Program

from . import services
from .models import ProgramDraft, ProgramVersion
from .selectors import draft_open

WEEKEND = {
    "code": "double-points-weekend",
    "name": "Double points weekend",
    "customer_text": "Double beans on Saturdays and Sundays",
    "trigger": "purchase",
    "kind": "per_amount",
    "points": None,  # the program's earn rate
    "multiplier": 1,  # stacks on "1 bean per euro": one more bean per euro = double, not triple
    "priority": 20,
    "stackable": True,
    "is_active": True,
    "conditions": {"days_of_week": [5, 6], "min_amount": 10},
}


def _rule(draft: ProgramDraft, name: str) -> dict[str, Any] | None:
    return next((r for r in draft.sections.get("earning_rules", []) if r.get("name") == name), None)


def demo_drafts_load(*, program: Program, actor: Any, now: dt.datetime) -> str:
    if ProgramVersion.objects.filter(program=program).exists() or draft_open(program) is not None:
        return "Drafts: the demo program has versions or a draft; left as they are."
    draft = services.draft_start(program=program, actor=actor, now=now - dt.timedelta(days=7))
    review = _rule(draft, "Product review")
    if review is not None:
        changed = {**review, "points": 25}
        draft = services.draft_item_save(
            draft=draft, section="earning_rules", key=review["code"], item=changed, actor=actor, now=now
        )
    services.draft_publish(
        draft=draft, actor=actor, note="Reviews earn 25 beans (was 20)", now=now - dt.timedelta(days=7)
    )

    draft = services.draft_start(program=program, actor=actor, now=now)
    draft = services.draft_item_save(
        draft=draft, section="earning_rules", key=None, item=dict(WEEKEND), actor=actor, now=now
    )
    visit = _rule(draft, "Store visit")
    if visit is not None:
        services.draft_item_save(
            draft=draft,
            section="earning_rules",
            key=visit["code"],
            item={**visit, "points": 10, "caps": {**visit.get("caps", {}), "per_day": 10}},
            actor=actor,
            now=now,
        )
    return "Drafts: version 1 published (reviews 25 beans); an open draft adds 'Double points weekend'."
