"""Referrals: fraud guards at enrolment, both rewarded on the friend's first qualifying purchase,
once per friend, a monthly cap per referrer (also under concurrency)."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from decimal import Decimal

import pytest
from django.db import transaction

from loyalty import services as ledger
from loyalty.models import Activity, LedgerEntry, Member
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.loyalty.test_concurrency import run_together
from workflows import referrals, services
from workflows.models import Referral, ReferralSettings

from .factories import EarningRuleFactory, ReferralSettingsFactory

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
ENROLLED = dt.datetime(2026, 3, 1, 10, 0, tzinfo=PARIS)
MARCH = dt.datetime(2026, 3, 10, 12, 0, tzinfo=PARIS)
_orders = itertools.count(1)


def buy(friend: Member, *, amount: str = "50.00", when: dt.datetime = MARCH, **kwargs):
    return services.activity_report(
        program=friend.program,
        member=friend,
        type="purchase",
        occurred_at=when,
        order_id=kwargs.pop("order_id", f"order-{next(_orders)}"),
        amount=Decimal(amount),
        **kwargs,
    )


def points_of(member: Member) -> list[tuple[int, str, str]]:
    return list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("points", "reason", "reference"))


def balance(member: Member) -> int:
    member.refresh_from_db(fields=["available"])
    return member.available


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris", expiry_days=None)


@pytest.fixture
def offer(program):
    return ReferralSettingsFactory(program=program, min_order_amount=Decimal("20.00"))


@pytest.fixture
def referrer(program):
    return MemberFactory(program=program, first_name="Ada", last_name="Lovelace", email="ada@example.com")


def friend_of(referrer: Member, **kwargs) -> Member:
    friend = MemberFactory(
        program=referrer.program,
        referred_by=referrer,
        enrolled_at=kwargs.pop("enrolled_at", ENROLLED),
        first_name=kwargs.pop("first_name", "Grace"),
        last_name=kwargs.pop("last_name", "Hopper"),
        **kwargs,
    )
    referrals.referral_create(friend=friend, referrer=referrer, now=ENROLLED)
    return friend


# --------------------------------------------------------------------------------------------
# Happy path


def test_friend_enrolled_with_a_code_is_rewarded_with_the_referrer_on_the_first_qualifying_purchase(
    program, offer, referrer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        friend, _ = ledger.member_enrol(
            program=program,
            external_id="friend-1",
            email="grace@example.com",
            first_name="Grace",
            last_name="Hopper",
            referred_by=referrer,
            now=ENROLLED,
        )
    referral = Referral.objects.get(friend=friend)
    assert (referral.referrer_id, referral.status, referral.reason) == (referrer.pk, "pending", "")

    buy(friend, amount="19.99")  # below the minimum order amount
    referral.refresh_from_db()
    assert referral.status == "pending"
    assert balance(referrer) == 0

    buy(friend, amount="20.00", order_id="o-42")
    referral.refresh_from_db()
    assert (referral.status, referral.order_id, referral.qualified_at) == ("rewarded", "o-42", MARCH)
    assert (referral.referrer_points, referral.friend_points, referral.reason) == (500, 250, "")
    assert points_of(referrer) == [(500, "Referral bonus: Grace H. joined", "o-42")]
    assert points_of(friend) == [(250, "Referral bonus: welcome from Ada L.", "o-42")]
    kinds = set(Activity.objects.filter(type="referral").values_list("member_id", "data__role", "order_id"))
    assert kinds == {(referrer.pk, "referrer", "o-42"), (friend.pk, "friend", "o-42")}

    buy(friend, amount="500.00")  # a second purchase pays no referral again
    assert (balance(referrer), balance(friend)) == (500, 250)


def test_referral_points_add_to_the_purchase_rules_points(program, offer, referrer):
    EarningRuleFactory(program=program, kind="per_amount", points=None)
    friend = friend_of(referrer)
    result = buy(friend, amount="40.00")
    assert result.points == 40  # the rules' points; the referral's come on top
    assert balance(friend) == 290
    assert result.balance.available == 290  # the response's balance includes the referral points


def test_a_replayed_purchase_does_not_pay_the_referral_twice(program, offer, referrer):
    friend = friend_of(referrer)
    buy(friend, order_id="o-1", idempotency_key="k-1")
    replay = buy(friend, order_id="o-1", idempotency_key="k-1")
    assert replay.replayed
    assert (balance(referrer), balance(friend)) == (500, 250)


def test_reasons_never_show_emails_or_customer_ids(program, offer):
    referrer = MemberFactory(program=program, first_name="", last_name="", email="secret@example.com")
    friend = friend_of(referrer, first_name="", last_name="", email="hidden@example.com")
    buy(friend)
    reasons = [r for _, r, _ in points_of(referrer) + points_of(friend)]
    assert reasons == [
        f"Referral bonus: member #{friend.pk} joined",
        f"Referral bonus: welcome from member #{referrer.pk}",
    ]
    assert not any("@" in r or "cust-" in r for r in reasons)


def test_refunding_the_qualifying_order_keeps_the_referral_points(program, offer, referrer):
    EarningRuleFactory(program=program, kind="per_amount", points=None)
    friend = friend_of(referrer)
    buy(friend, amount="40.00", order_id="o-1")
    services.refund_report(program=program, order_id="o-1", amount=Decimal("40.00"), occurred_at=MARCH)
    assert (balance(referrer), balance(friend)) == (500, 250)


# --------------------------------------------------------------------------------------------
# Fraud guards


def test_self_referral_by_the_same_member_is_rejected(program, offer, referrer):
    referral = referrals.referral_create(friend=referrer, referrer=referrer)
    assert (referral.status, referral.reason) == ("rejected", referrals.REASON_SELF)


@pytest.mark.parametrize(
    ("referrer_email", "friend_email"),
    [
        # (The very same address is refused earlier: one member per email in a program.)
        ("ada@example.com", "ADA+Shop@Example.com"),
        ("ada@example.com", "ada+loyalty@example.com"),
        ("ada.lovelace@gmail.com", "adalovelace+2@googlemail.com"),
    ],
)
def test_self_referral_by_the_same_email_is_rejected_and_kept_for_review(program, offer, referrer_email, friend_email):
    referrer = MemberFactory(program=program, email=referrer_email)
    friend = friend_of(referrer, email=friend_email)
    referral = Referral.objects.get(friend=friend)
    assert (referral.status, referral.reason) == ("rejected", referrals.REASON_SAME_EMAIL)
    buy(friend)
    referral.refresh_from_db()
    assert referral.status == "rejected"
    assert (balance(referrer), balance(friend)) == (0, 0)


def test_dots_only_count_as_the_same_address_at_gmail(program, offer):
    referrer = MemberFactory(program=program, email="ada.lovelace@example.com")
    friend = friend_of(referrer, email="adalovelace@example.com")
    assert Referral.objects.get(friend=friend).status == "pending"


def test_self_referral_by_the_same_customer_id_is_rejected(program, offer):
    referrer = MemberFactory(program=program, external_id="CUST-7")
    friend = friend_of(referrer, external_id=" cust-7 ")
    referral = Referral.objects.get(friend=friend)
    assert (referral.status, referral.reason) == ("rejected", referrals.REASON_SAME_CUSTOMER)


def test_a_blocked_referrer_is_rejected(program, offer):
    referrer = MemberFactory(program=program, status=Member.Status.BLOCKED)
    friend = friend_of(referrer)
    assert Referral.objects.get(friend=friend).reason == referrals.REASON_REFERRER_BLOCKED


def test_a_referrer_of_another_program_is_rejected(program, offer):
    stranger = MemberFactory(program=ProgramFactory())
    friend = MemberFactory(program=program)
    referral = referrals.referral_create(friend=friend, referrer=stranger)
    assert (referral.status, referral.reason, referral.program_id) == (
        "rejected",
        referrals.REASON_OTHER_PROGRAM,
        program.pk,
    )


def test_once_per_friend(program, offer, referrer):
    friend = friend_of(referrer)
    first = Referral.objects.get(friend=friend)
    other = MemberFactory(program=program)
    again = referrals.referral_create(friend=friend, referrer=other)
    assert again.pk == first.pk
    assert again.referrer_id == referrer.pk
    assert Referral.objects.filter(friend=friend).count() == 1


def test_without_an_active_offer_no_referral_is_recorded(program, referrer):
    friend = MemberFactory(program=program, referred_by=referrer)
    assert referrals.referral_create(friend=friend, referrer=referrer) is None
    ReferralSettingsFactory(program=program, is_active=False)
    assert referrals.referral_create(friend=friend, referrer=referrer) is None
    assert not Referral.objects.exists()


def test_an_offer_switched_off_pays_nothing_until_switched_on_again(program, offer, referrer):
    friend = friend_of(referrer)
    ReferralSettings.objects.filter(program=program).update(is_active=False)
    buy(friend)
    assert Referral.objects.get(friend=friend).status == "pending"
    assert balance(referrer) == 0
    ReferralSettings.objects.filter(program=program).update(is_active=True)
    buy(friend)
    assert Referral.objects.get(friend=friend).status == "rewarded"
    assert (balance(referrer), balance(friend)) == (500, 250)


def test_a_referrer_blocked_after_the_referral_gets_nothing_but_the_friend_does(program, offer, referrer):
    friend = friend_of(referrer)
    ledger.member_set_status(member=referrer, status=Member.Status.BLOCKED)
    buy(friend)
    referral = Referral.objects.get(friend=friend)
    assert (referral.status, referral.referrer_points, referral.friend_points) == ("rewarded", 0, 250)
    assert referral.reason == referrals.REASON_REFERRER_BLOCKED_AT_PURCHASE
    assert points_of(referrer) == []
    assert balance(friend) == 250


# --------------------------------------------------------------------------------------------
# Conditions and the monthly cap


def test_purchase_after_the_qualifying_window_does_not_qualify(program, referrer):
    ReferralSettingsFactory(program=program, qualify_within_days=30)
    late = friend_of(referrer)
    deadline = ENROLLED.astimezone(dt.UTC) + dt.timedelta(days=30)  # 30 x 24 h (a DST change in between)
    buy(late, when=deadline + dt.timedelta(minutes=1))
    assert Referral.objects.get(friend=late).status == "pending"
    in_time = friend_of(referrer)
    buy(in_time, when=deadline)
    assert Referral.objects.get(friend=in_time).status == "rewarded"
    assert balance(referrer) == 500
    assert balance(late) == 0


def test_monthly_cap_pays_the_referrer_up_to_the_cap_and_every_friend(program, referrer):
    ReferralSettingsFactory(program=program, monthly_cap=2)
    friends = [friend_of(referrer) for _ in range(3)]
    for i, friend in enumerate(friends):
        buy(friend, when=MARCH + dt.timedelta(days=i))
    rows = list(Referral.objects.order_by("friend_id").values_list("referrer_points", "friend_points", "reason"))
    assert rows == [(500, 250, ""), (500, 250, ""), (0, 250, referrals.REASON_CAP)]
    assert balance(referrer) == 1000
    assert all(balance(f) == 250 for f in friends)
    # Next month the referrer earns again.
    april = friend_of(referrer)
    buy(april, when=dt.datetime(2026, 4, 1, 0, 30, tzinfo=PARIS))  # still 31 March in UTC
    assert Referral.objects.get(friend=april).referrer_points == 500
    assert balance(referrer) == 1500


def test_monthly_cap_counts_months_in_the_program_time_zone(program, referrer):
    ReferralSettingsFactory(program=program, monthly_cap=1)
    march, april = friend_of(referrer), friend_of(referrer)
    buy(march, when=dt.datetime(2026, 3, 31, 23, 45, tzinfo=PARIS))
    buy(april, when=dt.datetime(2026, 4, 1, 0, 30, tzinfo=PARIS))  # 31 March 22:30 in UTC
    assert list(Referral.objects.order_by("friend_id").values_list("referrer_points", flat=True)) == [500, 500]
    assert balance(referrer) == 1000


def test_email_identity_normalises_case_tags_and_gmail_dots():
    assert referrals.email_identity(" A.B+x@Example.COM ") == "a.b@example.com"
    assert referrals.email_identity("a.b.c+news@googlemail.com") == "abc@gmail.com"
    assert referrals.email_identity("") == ""


# --------------------------------------------------------------------------------------------
# Concurrency


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_friends_qualifying_at_once_pay_the_referrer_once_under_a_cap_of_one():
    program = ProgramFactory(timezone="Europe/Paris", expiry_days=None)
    ReferralSettingsFactory(program=program, monthly_cap=1)
    referrer = MemberFactory(program=program)
    friends = [friend_of(referrer) for _ in range(2)]

    def purchase(i: int) -> int:
        with transaction.atomic(durable=True):
            return buy(friends[i], order_id=f"race-{i}").activity.pk

    results = run_together(2, purchase)
    assert all(kind == "ok" for kind, _ in results), results
    assert balance(referrer) == 500
    assert LedgerEntry.objects.filter(member=referrer).count() == 1
    rows = sorted(Referral.objects.values_list("status", "referrer_points", "friend_points"))
    assert rows == [("rewarded", 0, 250), ("rewarded", 500, 250)]
    assert all(balance(f) == 250 for f in friends)


# --------------------------------------------------------------------------------------------
# Admin


@pytest.fixture
def admin_client_(client):
    from tests.loyalty.factories import StaffFactory

    client.force_login(StaffFactory(is_superuser=True))
    return client


def test_staff_set_the_referral_offer_of_a_program_once(admin_client_, program):
    from django.urls import reverse

    url = reverse("admin:workflows_referralsettings_add")
    body = {
        "program": program.pk,
        "is_active": "on",
        "referrer_points": "300",
        "friend_points": "100",
        "min_order_amount": "25.00",
        "monthly_cap": "5",
        "qualify_within_days": "",
    }
    response = admin_client_.post(url, body)
    assert response.status_code == 302, response.context["adminform"].form.errors
    offer = ReferralSettings.objects.get(program=program)
    assert (offer.is_active, offer.referrer_points, offer.monthly_cap, offer.qualify_within_days) == (
        True,
        300,
        5,
        None,
    )
    again = admin_client_.post(url, body)
    assert again.status_code == 200  # one offer per program: the form refuses a second
    assert ReferralSettings.objects.count() == 1


def test_staff_review_referrals_read_only_filtered_and_searched(admin_client_, program, offer, referrer):
    from django.urls import reverse

    pending = friend_of(referrer, email="grace@example.com")
    rejected = friend_of(referrer, email="ADA+x@example.com")
    changelist = reverse("admin:workflows_referral_changelist")
    response = admin_client_.get(changelist, {"status__exact": "rejected"})
    assert response.status_code == 200
    assert [r.friend_id for r in response.context["cl"].result_list] == [rejected.pk]
    response = admin_client_.get(changelist, {"q": "grace@example.com"})
    assert [r.friend_id for r in response.context["cl"].result_list] == [pending.pk]
    response = admin_client_.get(changelist, {"q": str(rejected.pk)})
    assert [r.friend_id for r in response.context["cl"].result_list] == [rejected.pk]
    response = admin_client_.get(changelist, {"q": "not-a-number"})
    assert response.status_code == 200
    assert admin_client_.get(reverse("admin:workflows_referral_add")).status_code == 403
    referral = Referral.objects.get(friend=pending)
    change = reverse("admin:workflows_referral_change", args=[referral.pk])
    assert admin_client_.get(change).status_code == 200  # viewable
    assert admin_client_.post(change, {"status": "rewarded"}).status_code == 403
    assert Referral.objects.get(pk=referral.pk).status == "pending"
