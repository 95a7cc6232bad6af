from decimal import Decimal

import factory

from tests.loyalty.factories import ProgramFactory
from workflows.models import EarningRule


class EarningRuleFactory(factory.django.DjangoModelFactory):
    """A fixed 10-point purchase rule by default."""

    class Meta:
        model = EarningRule

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    trigger = "purchase"
    kind = EarningRule.Kind.FIXED
    points = Decimal("10")
