import factory
from django.utils import timezone

from cards.models import Card, CardBatch
from cards.numbers import random_number
from tests.loyalty.factories import MemberFactory, ProgramFactory


class CardBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CardBatch

    program = factory.SubFactory(ProgramFactory)
    quantity = 10
    note = factory.Sequence(lambda n: f"Batch {n}")


class CardFactory(factory.django.DjangoModelFactory):
    """Unassigned physical stock by default. `CardFactory(member=m)` (or the `active`
    trait) gives an active card of the member's program."""

    class Meta:
        model = Card

    program = factory.LazyAttribute(lambda o: o.member.program if o.member else ProgramFactory())
    member = None
    number = factory.LazyAttribute(lambda o: random_number(o.program.card_prefix, o.program.card_number_length))
    kind = Card.Kind.PHYSICAL
    status = factory.LazyAttribute(lambda o: Card.Status.ACTIVE if o.member else Card.Status.UNASSIGNED)
    created_at = factory.LazyFunction(timezone.now)
    assigned_at = factory.LazyAttribute(lambda o: o.created_at if o.member else None)

    class Params:
        active = factory.Trait(member=factory.SubFactory(MemberFactory))
        blocked = factory.Trait(
            member=factory.SubFactory(MemberFactory),
            status=Card.Status.BLOCKED,
            blocked_at=factory.LazyFunction(timezone.now),
        )
        digital = factory.Trait(kind=Card.Kind.DIGITAL)
