from decimal import Decimal

import factory

from tests.loyalty.factories import ProgramFactory
from workflows.models import EarningRule, ReferralSettings


class EarningRuleFactory(factory.django.DjangoModelFactory):
    """A fixed 10-point purchase rule by default."""

    class Meta:
        model = EarningRule

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    trigger = "purchase"
    kind = EarningRule.Kind.FIXED
    points = Decimal("10")


class ReferralSettingsFactory(factory.django.DjangoModelFactory):
    """An active referral offer: 500 points for the referrer, 250 for the friend, no conditions."""

    class Meta:
        model = ReferralSettings
        django_get_or_create = ("program",)

    program = factory.SubFactory(ProgramFactory)
    is_active = True
    referrer_points = 500
    friend_points = 250
