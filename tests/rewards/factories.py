from decimal import Decimal

import factory

from rewards.models import Reward
from tests.loyalty.factories import ProgramFactory


class RewardFactory(factory.django.DjangoModelFactory):
    """5 off for 500 points by default."""

    class Meta:
        model = Reward

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Reward {n}")
    kind = Reward.Kind.AMOUNT_OFF
    value = Decimal("5.00")
    cost_points = 500
