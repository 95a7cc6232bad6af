import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from loyalty.models import Activity, Member, Program


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program

    name = factory.Sequence(lambda n: f"Program {n}")
    slug = factory.Sequence(lambda n: f"program-{n}")
    currency = "EUR"
    expiry_days = 365
    pending_days = 0
    timezone = "Europe/Paris"


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    program = factory.SubFactory(ProgramFactory)
    external_id = factory.Sequence(lambda n: f"cust-{n}")
    email = factory.Sequence(lambda n: f"member{n}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Member{n}")
    referral_code = factory.Sequence(lambda n: f"REF{n:05d}")
    enrolled_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=400))


class PurchaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Activity

    member = factory.SubFactory(MemberFactory)
    program = factory.SelfAttribute("member.program")
    type = Activity.Type.PURCHASE
    occurred_at = factory.LazyFunction(timezone.now)
    order_id = factory.Sequence(lambda n: f"order-{n}")
    amount = 100
    currency = "EUR"
    channel = Activity.Channel.ONLINE


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
