"""Each event-driven email kind (docs/emails.md, "When each email is sent"): queued in the
transaction of its event with the right facts, sent after commit with its variables rendered,
not queued when the kind is off, marketing kinds only with consent, nothing for a rolled-back
transaction, one message for a retried event.

Templates: each test gives the program a template of the kind that prints the kind's variables
(checked by the save-time check `template_problems`), so the facts the event queued are proved
to reach the sent email whatever the shipped default says."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cards import importing, numbers
from cards import services as card_services
from loyalty import services as ledger
from notifications import email_kinds, email_render, emails
from notifications.models import EmailMessage, EmailSettings, EmailTemplate
from rewards import services as reward_services
from tests.api.conftest import client_with, make_key
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, StaffFactory
from tests.loyalty.test_admin import form_token
from tests.rewards.factories import RewardFactory
from tests.tiers.factories import TierFactory
from tests.workflows.factories import EarningRuleFactory, ReferralSettingsFactory
from tiers import services as tier_services
from tiers.models import MemberTier, TierChange
from workflows import birthdays
from workflows import services as workflows

pytestmark = pytest.mark.django_db(transaction=True)


def frame(program, kind: str, text: str) -> EmailTemplate:
    """A template of `kind` whose subject names the kind and whose bodies print `text`."""
    assert email_render.template_problems(text, kind) == [], email_render.template_problems(text, kind)
    return EmailTemplate.objects.create(
        program=program,
        kind=kind,
        language="en",
        subject=f"[{kind}] {{{{ program.name }}}}",
        html_body=f"<p>{text}</p>",
        text_body=text,
    )


def sent(kind: str) -> list:
    return [m for m in mail.outbox if m.subject.startswith(f"[{kind}]")]


def text_of(message) -> str:
    return message.body.split("\n\n--\n")[0]


def messages(kind: str, **filters) -> list[EmailMessage]:
    return list(EmailMessage.objects.filter(kind=kind, **filters).order_by("id"))


def settings_for(program, *, enable=(), disable=(), **fields) -> EmailSettings:
    kinds = [k for k in email_kinds.default_enabled_kinds() if k not in disable] + list(enable)
    row, _ = EmailSettings.objects.update_or_create(program=program, defaults={"enabled_kinds": kinds, **fields})
    return row


@pytest.fixture
def consenting(program):
    return MemberFactory(program=program, first_name="Ada", email="ada@example.com", email_consent=True)


# --------------------------------------------------------------------------------------------
# Staff adjustments: points_added / points_removed


def test_an_adjustment_with_tell_the_member_queues_and_sends_points_added(program, member):
    frame(program, "points_added", "+{{ points }} because {{ reason }}")
    ledger.points_adjust(
        program=program, member_id=member.pk, points=40, reason="Sorry for the wait", source="t", notify_member=True
    )
    (message,) = messages("points_added", member=member)
    assert message.data == {"points": 40, "reason": "Sorry for the wait"}
    assert message.status == "sent"
    (email,) = sent("points_added")
    assert text_of(email) == "+40 because Sorry for the wait"


def test_a_debit_with_tell_the_member_sends_points_removed_without_a_sign(program, member):
    frame(program, "points_removed", "-{{ points }} because {{ reason }}")
    ledger.points_adjust(
        program=program, member_id=member.pk, points=-15, reason="Returned gift", source="t", notify_member=True
    )
    assert text_of(sent("points_removed")[0]) == "-15 because Returned gift"


def test_an_adjustment_without_the_tick_tells_nobody(program, member):
    ledger.points_adjust(program=program, member_id=member.pk, points=40, reason="Quiet", source="t")
    assert not EmailMessage.objects.filter(kind__in=["points_added", "points_removed"]).exists()


def test_a_retried_adjustment_queues_one_message(program, member):
    for _ in range(2):
        ledger.points_adjust(
            program=program,
            member_id=member.pk,
            points=40,
            reason="Goodwill",
            source="t",
            idempotency_key="adj-1",
            notify_member=True,
        )
    assert len(messages("points_added")) == 1
    assert len(mail.outbox) == 1


def test_a_rolled_back_adjustment_queues_nothing(program, member):
    def adjust_then_fail():
        with transaction.atomic():
            ledger.points_adjust(
                program=program, member_id=member.pk, points=40, reason="x", source="t", notify_member=True
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        adjust_then_fail()
    assert not EmailMessage.objects.exists()
    assert mail.outbox == []


def test_a_switched_off_points_added_queues_nothing(program, member):
    settings_for(program, disable=["points_added"])
    ledger.points_adjust(program=program, member_id=member.pk, points=40, reason="x", source="t", notify_member=True)
    assert not EmailMessage.objects.exists()


def test_the_admin_adjustment_form_has_the_tell_the_member_box(client, program, member):
    client.force_login(StaffFactory(is_superuser=True))
    url = reverse("admin:loyalty_member_adjust_points", args=[member.pk])
    page = client.get(url)
    assert 'name="notify_member"' in page.content.decode()
    response = client.post(
        url, {"points": "25", "reason": "Birthday cake", "notify_member": "on", "idempotency_key": form_token(page)}
    )
    assert response.status_code == 302
    (message,) = messages("points_added", member=member)
    assert message.data == {"points": 25, "reason": "Birthday cake"}


def test_the_api_adjustment_takes_notify_member(program, member):
    client = client_with(make_key(program, scopes=["read", "write", "adjust"])[1])
    for notify, points in ((False, 10), (True, -5)):
        response = client.post(
            "/api/v1/adjustments",
            {"member_id": member.pk, "points": points, "reason": "Fix", "notify_member": notify},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )
        assert response.status_code == 201, response.json()
    assert [(m.kind, m.data["points"]) for m in EmailMessage.objects.all()] == [("points_removed", 5)]


# --------------------------------------------------------------------------------------------
# Redemptions: reward_redeemed and the admin copy


@pytest.fixture
def coffee(program):
    return RewardFactory(program=program, name="Free coffee", cost_points=100, value=Decimal("2.50"), valid_days=30)


def test_a_redemption_queues_the_member_message_and_the_admin_copy_in_one_statement(program, consenting, coffee):
    settings_for(program, enable=["reward_redeemed_admin"], admin_email="shop@example.com")
    frame(program, "reward_redeemed", "{{ coupon.code }} {{ coupon.reward }} {{ coupon.value }} {{ points }} "
          "{{ coupon.valid_until|date:'Y-m-d' }} {{ coupon.how_to_use }}")  # fmt: skip
    frame(program, "reward_redeemed_admin", "{{ coupon.code }} {{ points }}")
    ledger.points_adjust(program=program, member_id=consenting.pk, points=300, reason="x", source="t")
    now = timezone.now()
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        result = reward_services.reward_redeem(program=program, member=consenting, reward=coffee, now=now)
    inserts = [q for q in ctx.captured_queries if "INSERT INTO notifications_emailmessage" in q["sql"]]
    assert len(inserts) == 1
    code = result.redemption.code
    (mine,) = messages("reward_redeemed", member=consenting)
    (copy,) = messages("reward_redeemed_admin")
    assert mine.data["coupon"]["code"] == copy.data["coupon"]["code"] == code
    assert (copy.member_id, copy.to_email) == (None, "shop@example.com")
    assert copy.data["customer"] == {"id": consenting.pk, "email": "ada@example.com", "name": consenting.first_name
                                     + " " + consenting.last_name}  # fmt: skip
    valid_until = (program.local_date(result.redemption.expires_at) - dt.timedelta(days=1)).isoformat()
    assert text_of(sent("reward_redeemed")[0]) == (
        f"{code} Free coffee 2.50 EUR 100 {valid_until} Enter the code at checkout, or show it at the till."
    )
    (admin_email,) = sent("reward_redeemed_admin")
    assert admin_email.to == ["shop@example.com"]
    assert text_of(admin_email) == f"{code} 100"


def test_a_retried_redemption_queues_nothing_more(program, member, coffee):
    ledger.points_adjust(program=program, member_id=member.pk, points=300, reason="x", source="t")
    for _ in range(2):
        reward_services.reward_redeem(program=program, member=member, reward=coffee, idempotency_key="r-1")
    assert len(messages("reward_redeemed")) == 1
    assert not messages("reward_redeemed_admin")  # off by default, and no admin address


def test_a_refused_redemption_queues_nothing(program, member, coffee):
    from loyalty import errors

    with pytest.raises(errors.InsufficientPoints):
        reward_services.reward_redeem(program=program, member=member, reward=coffee)
    assert not EmailMessage.objects.exists()


def test_a_switched_off_reward_redeemed_writes_no_statement(program, member, coffee):
    settings_for(program, disable=["reward_redeemed"])
    ledger.points_adjust(program=program, member_id=member.pk, points=300, reason="x", source="t")
    emails.program_settings(program.pk)  # cached, as on a warm process
    with CaptureQueriesContext(connection) as ctx:
        reward_services.reward_redeem(program=program, member=member, reward=coffee)
    assert not [q for q in ctx.captured_queries if "notifications_emailmessage" in q["sql"]]
    assert not EmailMessage.objects.exists()


# --------------------------------------------------------------------------------------------
# reward_within_reach


def test_crossing_a_reward_cost_queues_within_reach_once_per_crossing(program, consenting, coffee):
    frame(program, "reward_within_reach", "{{ reward.name }} for {{ reward.points }}")
    ledger.points_adjust(program=program, member_id=consenting.pk, points=90, reason="x", source="t")
    assert not messages("reward_within_reach")
    ledger.points_earn(program=program, member_id=consenting.pk, points=20)  # 90 -> 110 crosses 100
    (message,) = messages("reward_within_reach", member=consenting)
    assert message.data["reward"]["name"] == "Free coffee"
    assert text_of(sent("reward_within_reach")[0]) == "Free coffee for 100"
    ledger.points_earn(program=program, member_id=consenting.pk, points=20)  # still above: nothing new
    assert len(messages("reward_within_reach")) == 1
    ledger.points_adjust(program=program, member_id=consenting.pk, points=-50, reason="x", source="t")
    ledger.points_earn(program=program, member_id=consenting.pk, points=50)  # a new crossing
    assert len(messages("reward_within_reach")) == 2


def test_within_reach_needs_consent(program, member, coffee):
    ledger.points_earn(program=program, member_id=member.pk, points=150)
    assert not messages("reward_within_reach")


def test_within_reach_skips_rewards_the_member_cannot_take(program, consenting):
    gold = TierFactory(program=program, name="Gold", position=5)
    RewardFactory(program=program, name="Gold only", cost_points=100, min_tier=gold)
    RewardFactory(program=program, name="Sold out", cost_points=100, stock=0)
    RewardFactory(program=program, name="Retired", cost_points=100, is_active=False)
    RewardFactory(program=program, name="Too dear", cost_points=1000)
    ledger.points_earn(program=program, member_id=consenting.pk, points=150)
    assert not messages("reward_within_reach")
    MemberTier.objects.update_or_create(member=consenting, defaults={"tier": gold, "since": timezone.now()})
    ledger.points_earn(program=program, member_id=consenting.pk, points=900)  # 150 -> 1050: Too dear only
    assert [m.data["reward"]["name"] for m in messages("reward_within_reach")] == ["Too dear"]


def test_pending_points_do_not_bring_a_reward_within_reach(program, consenting, coffee):
    program.pending_days = 14
    program.save()
    ledger.points_earn(program=program, member_id=consenting.pk, points=150)
    assert not messages("reward_within_reach")


# --------------------------------------------------------------------------------------------
# Tiers


def test_an_upgrade_queues_tier_upgraded_with_the_tiers(program, member):
    program.tier_metric = "points_earned"
    program.save()
    silver = TierFactory(program=program, name="Silver", position=1, threshold=Decimal(100), benefits="Free delivery")
    frame(program, "tier_upgraded", "{{ previous_tier.name|default:'none' }} -> {{ tier.name }}: {{ tier.benefits }}")
    ledger.points_earn(program=program, member_id=member.pk, points=150)  # the tiers app upgrades at once
    change = TierChange.objects.get(member=member)
    assert change.to_tier == silver
    (message,) = messages("tier_upgraded", member=member)
    assert message.source == f"tier_change:{change.pk}"
    assert text_of(sent("tier_upgraded")[0]) == "none -> Silver: Free delivery"


def test_the_nightly_downgrades_are_written_with_one_statement_per_chunk(program):
    program.tier_metric = "points_earned"
    program.save()
    silver = TierFactory(program=program, name="Silver", position=1, threshold=Decimal(100))
    gold = TierFactory(program=program, name="Gold", position=2, threshold=Decimal(1000))
    frame(program, "tier_downgraded", "{{ previous_tier.name }} -> {{ tier.name|default:'no tier' }}")
    past = timezone.now() - dt.timedelta(days=10)
    members = [MemberFactory(program=program) for _ in range(3)]
    for member in members:
        MemberTier.objects.create(member=member, tier=gold, since=past, retain_until=past)
    ledger.points_earn(program=program, member_id=members[0].pk, points=150)
    with CaptureQueriesContext(connection) as ctx:
        result = tier_services.tiers_evaluate(now=timezone.now())
    assert result.downgrades == 3
    inserts = [q for q in ctx.captured_queries if "INSERT INTO notifications_emailmessage" in q["sql"]]
    assert len(inserts) == 1
    assert sorted(text_of(m) for m in sent("tier_downgraded")) == [
        "Gold -> Silver",
        "Gold -> no tier",
        "Gold -> no tier",
    ]
    assert MemberTier.objects.get(member=members[0]).tier == silver
    tier_services.tiers_evaluate(now=timezone.now())  # a second run changes and queues nothing
    assert len(messages("tier_downgraded")) == 3


def test_tiers_set_by_an_import_send_no_tier_email(program, member):
    TierFactory(program=program, name="Gold", position=2)
    tier_services.tiers_set_manual_by_name(program=program, assignments=[(member.pk, "Gold")], reason="Import #1")
    assert MemberTier.objects.get(member=member).tier.name == "Gold"
    assert not messages("tier_upgraded")


def test_switched_off_tier_kinds_write_no_statement(program, member):
    settings_for(program, disable=["tier_upgraded", "tier_downgraded"])
    gold = TierFactory(program=program, name="Gold", position=2)
    emails.program_settings(program.pk)
    with CaptureQueriesContext(connection) as ctx:
        tier_services.tier_set_manual(
            member=member, tier=gold, until=timezone.now() + dt.timedelta(days=30), reason="VIP"
        )
    assert not [q for q in ctx.captured_queries if "notifications_emailmessage" in q["sql"]]


# --------------------------------------------------------------------------------------------
# Birthdays, referrals, card claims


def test_the_birthday_job_queues_a_birthday_email_instead_of_points_earned(program):
    EarningRuleFactory(program=program, name="Birthday bonus", trigger="birthday", points=Decimal(200))
    frame(program, "birthday", "Happy birthday, {{ member.first_name }}: {{ points }} points")
    today = program.local_date(timezone.now())
    born = dt.date(1990, today.month, min(today.day, 28))
    celebrating = MemberFactory(program=program, birthday=born, email_consent=True)
    no_consent = MemberFactory(program=program, birthday=born)
    now = program.start_of_day(today.replace(day=born.day)) + dt.timedelta(hours=1)
    for _ in range(2):
        birthdays.birthdays_award(now=now, lookback_days=0)
    (message,) = messages("birthday")
    assert message.member == celebrating
    assert message.data["points"] == 200
    assert text_of(sent("birthday")[0]) == "Happy birthday, Ada: 200 points"
    assert not messages("points_earned")
    assert not messages("birthday", member=no_consent)


def test_a_rewarded_referral_tells_both_members_their_side(program):
    ReferralSettingsFactory(program=program, referrer_points=500, friend_points=250)
    frame(program, "referral_rewarded", "{{ role }} {{ points }} {{ friend.first_name }}")
    referrer = MemberFactory(program=program, first_name="Ada")
    friend = MemberFactory(program=program, first_name="Grace", referred_by=referrer)
    from workflows.referrals import referral_create

    referral_create(friend=friend, referrer=referrer)
    workflows.activity_report(
        program=program,
        member=friend,
        type="purchase",
        occurred_at=timezone.now(),
        order_id="R-1",
        amount=Decimal("50.00"),
    )
    assert sorted(text_of(m) for m in sent("referral_rewarded")) == ["friend 250 Ada", "referrer 500 Grace"]
    assert not messages("points_earned")  # the purchase earned nothing; the referral's own email says it


def test_claiming_a_card_queues_card_claimed_with_its_last_digits_and_the_points_moved(program, member):
    frame(program, "card_claimed", "{{ card.last_digits }} {{ card.number }} {{ points_moved }}")
    anonymous = MemberFactory(
        program=program, external_id=None, email="", first_name="", last_name="", enrollment_channel="card"
    )
    card = CardFactory(member=anonymous)
    ledger.points_earn(program=program, member_id=anonymous.pk, points=70)
    card_services.card_claim(program=program, number=card.number, pin=numbers.pin_for(card.number), into_member=member)
    (message,) = messages("card_claimed", member=member)
    assert message.data["points_moved"] == 70
    assert card.number not in str(message.data)
    assert text_of(sent("card_claimed")[0]) == f"{card.number[-4:]} •••• {card.number[-4:]} 70"


# --------------------------------------------------------------------------------------------
# Login links, imports


def test_login_link_is_queued_once_per_link_and_sent(program, member):
    frame(program, "login_link", "{{ login_url }} ({{ valid_minutes }} min)")
    url = "https://shop.example/p/login/abc123"
    first = emails.login_link_queue(member=member, url=url, valid_minutes=15)
    again = emails.login_link_queue(member=member, url=url, valid_minutes=15)
    assert first is not None
    assert again is None
    other = emails.login_link_queue(member=member, url=url + "x", valid_minutes=15)
    assert other is not None
    assert [text_of(m) for m in sent("login_link")] == [f"{url} (15 min)", f"{url}x (15 min)"]


def test_login_links_are_sent_even_when_a_merchant_switched_every_kind_off(program, member):
    settings_for(program, disable=email_kinds.default_enabled_kinds())
    assert emails.login_link_queue(member=member, url="https://x.example/l/1", valid_minutes=10) is not None


def _import(program, rows):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["external_id", "email", "first_name"])
    writer.writerows(rows)
    staff = StaffFactory(is_superuser=True)
    dry = importing.member_import_dry_run(program=program, file_name="m.csv", data=out.getvalue().encode(), actor=staff)
    return importing.member_import_apply(member_import=dry, actor=staff)


def test_imported_members_get_no_welcome_unless_the_program_asks(program):
    _import(program, [["c-1", "one@example.com", "One"]])
    assert not messages("welcome")
    settings_for(program, welcome_on_import=True)
    with CaptureQueriesContext(connection) as ctx:
        _import(program, [["c-2", "two@example.com", "Two"], ["c-3", "", "Three"], ["c-4", "four@example.com", "F"]])
    inserts = [q for q in ctx.captured_queries if "INSERT INTO notifications_emailmessage" in q["sql"]]
    assert len(inserts) == 1
    assert sorted(m.member.email for m in messages("welcome")) == ["four@example.com", "two@example.com"]
    assert all(m.status == "sent" for m in messages("welcome"))


# --------------------------------------------------------------------------------------------
# Automations: custom


def _automation(program, **fields):
    from workflows.models import Automation

    values = {
        "name": "Thanks",
        "is_active": True,
        "trigger": Automation.Trigger.DAILY,
        "period": Automation.Period.YEAR,
        "award_points": 10,
        "email_subject": "Thanks {{ member.first_name }}",
        "email_body": "{{ points }} {{ program.points_name }} for <you>",
        **fields,
    }
    return Automation.objects.create(program=program, **values)


def test_an_automation_email_is_a_custom_message_rendered_in_the_sandbox(program, consenting):
    from workflows import automations

    frame(program, "custom", "{{ subject }}|{{ body }}")
    automation = _automation(program)
    automations.automations_run(now=timezone.now())
    automations.automations_run(now=timezone.now())  # same period: nothing new
    (message,) = messages("custom", member=consenting)
    assert message.source.startswith(f"automation:{automation.pk}:")
    assert (message.data["subject"], message.data["body"]) == ("Thanks Ada", f"10 {program.points_name} for <you>")
    (email,) = sent("custom")
    assert text_of(email) == f"Thanks Ada|10 {program.points_name} for <you>"
    assert "for &lt;you&gt;" in email.alternatives[0][0]  # the HTML part escapes the rendered body


def test_a_marketing_automation_email_needs_consent_unless_marked_transactional(program, member):
    from workflows import automations
    from workflows.models import AutomationRun

    marketing = _automation(program, name="Promo")
    service = _automation(program, name="Service", email_transactional=True)
    automations.automations_run(now=timezone.now())
    (message,) = messages("custom", member=member)
    assert message.source.startswith(f"automation:{service.pk}:")
    assert (message.data["transactional"], message.status) == (True, "sent")
    assert AutomationRun.objects.get(automation=marketing).details["email"] == "skipped: no email consent"


def test_a_switched_off_custom_kind_queues_no_automation_email(program, consenting):
    from workflows import automations
    from workflows.models import AutomationRun

    settings_for(program, disable=["custom"])
    automation = _automation(program)
    result = automations.automations_run(now=timezone.now())
    assert result.emails == 0
    assert not EmailMessage.objects.exists()
    assert AutomationRun.objects.get(automation=automation).details["email"].startswith("not queued")
