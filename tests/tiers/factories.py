from decimal import Decimal

import factory

from tests.loyalty.factories import ProgramFactory
from tiers.models import Tier


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Tier {n}")
    position = factory.Sequence(lambda n: n + 1)
    threshold = Decimal("100")
    multiplier = Decimal("1")
    retention_days = 0
