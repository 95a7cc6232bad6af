"""The cards part of `manage.py load_demo` (`cards.demo`, run on `loyalty.signals.demo_loaded`).

A transactional test: the command commits as it would on a laptop, so the digital cards of
new members (issued after the enrolment commits) and the eager batch task (run at commit)
exist as they would for real."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.db.models import Count

from cards.demo import DEMO_NOTE
from cards.models import Card, CardBatch, CardBatchEvent, CardEvent
from loyalty.models import Activity, LedgerEntry, Member, Program
from loyalty.selectors import ledger_problems

pytestmark = pytest.mark.django_db(transaction=True)

FIRST_LINE = re.compile(
    r"^Cards: batch #(\d+) of 500 physical cards \(done, note 'Demo batch'\); (\d+) assigned to members, "
    r"5 purchases on new cards enrolled anonymous members \(2 claimed with the PIN\), 2 blocked, 2 replaced, "
    r"in [\d.]+ s\.$"
)


def load_demo() -> list[str]:
    out = io.StringIO()
    call_command("load_demo", members=30, stdout=out)
    return [line for line in out.getvalue().splitlines() if line.startswith("Cards:")]


def counts() -> dict[str, int]:
    models = (Card, CardEvent, CardBatch, CardBatchEvent, Member, LedgerEntry, Activity)
    return {model.__name__: model.objects.count() for model in models}


def test_load_demo_adds_the_demo_cards_once_and_keeps_the_ledger_consistent():
    first = load_demo()
    before = counts()
    second = load_demo()

    # One line per demo brand and run (Demo Coffee Roasters first, then Demo Espresso Bar); the
    # second run finds the batches and changes nothing.
    assert len(first) == 2, first
    match = FIRST_LINE.match(first[0])
    assert match, first[0]
    batch = CardBatch.objects.get(note=DEMO_NOTE, program__slug="demo")
    bar_batch = CardBatch.objects.get(note=DEMO_NOTE, program__slug="demo-bar")
    assert int(match.group(1)) == batch.pk
    assert second == [
        f"Cards: demo batch #{pk} of 500 cards exists (done): left as it is." for pk in (batch.pk, bar_batch.pk)
    ]
    assert counts() == before
    assert list(ledger_problems()) == []
    call_command("verify_ledger", stdout=io.StringIO())  # raises CommandError on a mismatch

    # The batch: complete, 500 stock cards, created by the demo staff user.
    program = Program.objects.get(slug="demo")
    assert (batch.program, batch.status, batch.created, batch.quantity) == (program, "done", 500, 500)
    assert Card.objects.filter(batch=batch).count() == 500
    assert [(e.kind, e.actor and e.actor.username) for e in batch.events.order_by("id")] == [
        ("created", "demo"),
        ("done", None),
    ]

    # Plastic cards for members who only had their digital card (every active demo member here).
    assigned = int(match.group(2))
    active_members = (
        Member.objects.filter(program=program, status="active")
        .exclude(enrollment_channel="card")
        .exclude(external_id__startswith="demo-friend-")  # referred friends, enrolled after the cards
        .exclude(external_id__startswith="demo-story-")  # the member page's story, added after the cards
    )
    assert assigned == min(40, active_members.count()) > 0
    holders = Member.objects.filter(cards__batch=batch).exclude(enrollment_channel="card").distinct()
    assert holders.count() == assigned
    assert all(m.cards.filter(kind="digital").exists() for m in holders)

    # Purchases on new cards enrolled anonymous members, who earned points; two claimed theirs.
    anonymous = Member.objects.filter(program=program, enrollment_channel="card")
    assert anonymous.count() == 5
    orders = Activity.objects.filter(program=program, order_id__startswith="demo-card-")
    assert sorted(orders.values_list("order_id", flat=True)) == [f"demo-card-{n}" for n in range(1, 6)]
    assert all(a.member.enrollment_channel == "card" for a in orders)
    earned = LedgerEntry.objects.filter(program=program, reference__startswith="demo-card-", kind="earn")
    assert earned.count() == 5
    assert sum(m.pending + m.available for m in anonymous) == sum(e.points for e in earned) > 0
    assert sorted(anonymous.exclude(email="").values_list("email", flat=True)) == [
        "nora.keller@example.com",
        "tom.baker@example.com",
    ]
    assert Card.objects.filter(batch=batch, claimed_at__isnull=False).count() == 2

    # Blocked: a member's lost card and a stolen stock card; two cards replaced.
    # (The member page's demo story replaces a card of its own: left out here.)
    story_cards = Card.objects.filter(member__external_id__startswith="demo-story-").values("pk")
    blocked = Card.objects.filter(program=program, status="blocked").exclude(pk__in=story_cards)
    assert blocked.filter(member__isnull=True, batch=batch).count() == 1  # stolen stock
    assert blocked.filter(member__isnull=False, replaced_by__isnull=True).count() == 1  # lost
    replaced = blocked.filter(replaced_by__isnull=False)
    assert replaced.count() == 2
    assert all(card.replaced_by.member_id == card.member_id for card in replaced)
    assert {card.replaced_by.batch_id for card in replaced} == {batch.pk, None}  # stock handed out, new number

    # Every change left its event.
    kinds = dict(
        CardEvent.objects.filter(card__program=program)
        .exclude(card__in=story_cards)
        .values("kind")
        .annotate(n=Count("id"))
        .values_list("kind", "n")
    )
    assert kinds["assigned"] == assigned + 2  # + the two replacements
    assert (kinds["enrolled"], kinds["claimed"], kinds["blocked"], kinds["replaced"]) == (5, 2, 2, 2)
    assert kinds["issued"] == Card.objects.filter(program=program, kind="digital").exclude(pk__in=story_cards).count()
