"""The member page (dashboard/views_member.py): what it shows, each action end to end (done,
refused: no permission, another program's member, bad input), the audit rows, the ledger's
keyset paging."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from cards.models import Card
from loyalty import services
from loyalty.models import LedgerEntry, Member, MemberNote, StaffAction
from notifications.models import EmailMessage
from rewards.models import Redemption
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.rewards.factories import RewardFactory

from .member_helpers import earn, form_token, member_with_story, messages_of, role_user

pytestmark = pytest.mark.django_db


def page_url(member):
    return reverse("dashboard:member", args=[member.pk])


def action_url(member, name, *args):
    return reverse(f"dashboard:member_{name}", args=[member.pk, *args])


@pytest.fixture
def owner(db):
    return role_user("Owner")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def story(program, owner):
    return member_with_story(program, owner)


def audit_actions(member):
    return list(StaffAction.objects.filter(member=member).order_by("id").values_list("action", flat=True))


# --- the page ---------------------------------------------------------------------------------


def test_the_page_tells_the_members_whole_story(owner_client, story):
    member, card, coupon, _friend = story

    response = owner_client.get(page_url(member))

    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Léa Martin",
        "lea.martin@example.com",
        card.number,  # cards
        "expire within 30 days",  # balances
        "ORD-1001",  # orders with their points and refunds
        "+1200",
        "\u221220.00",  # minus sign
        coupon.code,  # coupons
        "Your Free coffee coupon",  # emails with their status
        "Delivered",
        "Hugo Petit",  # referrals
        "Prefers email.",  # notes
        "Staff actions (audit)",
        "Adjust points",
        "Transfer points to another member",
        "Block the member",
    ):
        assert text in html, text
    # The admin's base: its header and the user's tools.
    assert 'id="user-tools"' in html


def test_the_admin_member_pages_link_to_the_member_page(owner_client, story):
    member = story[0]
    change = owner_client.get(reverse("admin:loyalty_member_change", args=[member.pk])).content.decode()
    changelist = owner_client.get(reverse("admin:loyalty_member_changelist")).content.decode()

    assert page_url(member) in change
    assert "open the member page" in change
    assert page_url(member) in changelist


def test_another_programs_member_is_not_found(owner_client, monkeypatch, program, other_program_member):
    """Staff scoping: the page and every action look members up among `programs_for(user)`."""
    import dashboard.member_page as member_page

    only_mine = type(program).objects.filter(pk=program.pk)
    monkeypatch.setattr(member_page, "programs_for", lambda user: only_mine)

    assert owner_client.get(page_url(other_program_member)).status_code == 404
    token = form_token(owner_client.get(page_url(MemberFactory(program=program))).content.decode())
    response = owner_client.post(
        action_url(other_program_member, "adjust"), {"points": "5", "reason": "x", "idempotency_key": token}
    )
    assert response.status_code == 404
    assert not LedgerEntry.objects.filter(member=other_program_member).exists()
    assert owner_client.post(action_url(other_program_member, "block"), {"reason": "fraud"}).status_code == 404
    assert not StaffAction.objects.exists()


def test_a_non_staff_user_is_sent_to_the_login(client, member):
    assert client.get(page_url(member)).status_code == 302


def test_actions_refuse_get(owner_client, member):
    assert owner_client.get(action_url(member, "adjust")).status_code == 405


@pytest.mark.parametrize(
    ("role", "name", "data"),
    [
        (None, "adjust", {"points": "5", "reason": "x"}),
        ("Support", "transfer", {"points": "5", "reason": "x"}),
        ("Support", "refund", {"order_id": "ORD-1001", "amount": "1", "reason": "x"}),
        (None, "resend", {"message": "1"}),  # Support may resend: the roles give it the outbox
        (None, "block", {"reason": "x"}),
        (None, "note", {"text": "x"}),
    ],
)
def test_actions_are_refused_without_their_permission(client, story, role, name, data):
    if role:
        user = role_user(role)
    else:  # may look members up, nothing more
        user = StaffFactory()
        user.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(user)
    member = story[0]
    entries = LedgerEntry.objects.count()

    response = client.post(
        action_url(member, name), {**data, "idempotency_key": "5d0d6a52-6a7f-4a4e-9d43-0f8a7c1a0b1c"}
    )

    assert response.status_code == 403
    assert LedgerEntry.objects.count() == entries
    assert not StaffAction.objects.exists()
    assert client.get(page_url(member)).status_code == 200  # the page itself is a look-up


# --- adjust ------------------------------------------------------------------------------------


def post_adjust(client, member, points, reason="Goodwill", **extra):
    token = form_token(client.get(page_url(member)).content.decode())
    return client.post(
        action_url(member, "adjust"), {"points": str(points), "reason": reason, "idempotency_key": token, **extra}
    )


def test_a_small_adjustment_is_posted_and_audited(owner_client, owner, member):
    response = post_adjust(owner_client, member, 50, "Broken cup")

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.available == 50
    action = StaffAction.objects.get(member=member)
    assert (action.action, action.actor, action.reason, action.details["points"]) == ("adjust", owner, "Broken cup", 50)
    assert "Broken cup" in owner_client.get(page_url(member)).content.decode()  # the audit on the page


def test_the_minus_ten_thousand_typo_meets_a_question(owner_client, member):
    earn(member, 300)

    response = post_adjust(owner_client, member, -10_000, "Typo?")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Please confirm this adjustment" in html
    assert "-9700" in html  # the new balance
    assert "9700 points owed" in html  # the debt
    assert "confirmation threshold" in html
    member.refresh_from_db()
    assert member.available == 300
    assert not StaffAction.objects.filter(member=member).exists()


def test_a_confirmed_adjustment_is_posted(owner_client, member):
    token = form_token(owner_client.get(page_url(member)).content.decode())
    data = {"points": "-2000", "reason": "Fraudulent orders", "idempotency_key": token}

    assert owner_client.post(action_url(member, "adjust"), data).status_code == 200  # the question
    response = owner_client.post(action_url(member, "adjust"), {**data, "confirm_points": "-2000"})

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.available == -2000
    assert StaffAction.objects.get(member=member).details["confirmed"] is True


def test_a_confirmation_counts_only_for_the_points_confirmed(owner_client, member):
    response = post_adjust(owner_client, member, -5000, confirm_points="-2000")

    assert response.status_code == 200
    assert "Please confirm" in response.content.decode()
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_a_support_user_above_the_limit_asks_for_approval(client, member):
    support = role_user("Support")
    client.force_login(support)

    response = post_adjust(client, member, 800, "Lost parcel", confirm_points="800")

    assert response.status_code == 302
    assert not LedgerEntry.objects.filter(member=member).exists()
    request = member.adjustment_requests.get()
    assert (request.points, request.status, request.requested_by) == (800, "pending", support)
    assert "your limit of 500" in request.why
    assert audit_actions(member) == ["adjust_requested"]
    assert any("approval" in m for m in messages_of(response))


def test_a_support_user_within_the_limit_posts(client, member):
    client.force_login(role_user("Support"))

    post_adjust(client, member, 400, "Lost parcel")

    member.refresh_from_db()
    assert member.available == 400


def test_the_unconfirmed_request_shows_the_question_first(client, member):
    client.force_login(role_user("Support"))

    response = post_adjust(client, member, 800)

    assert response.status_code == 200
    assert "needs another staff member's approval" in response.content.decode()
    assert not member.adjustment_requests.exists()


def test_an_adjustment_without_a_reason_is_a_form_error(owner_client, member):
    response = post_adjust(owner_client, member, 50, reason="  ")

    assert response.status_code == 400
    assert "reason" in response.context["forms"]["adjust"].errors
    assert not LedgerEntry.objects.filter(member=member).exists()
    assert not StaffAction.objects.exists()


def test_an_adjustment_sent_twice_posts_once(owner_client, member):
    token = form_token(owner_client.get(page_url(member)).content.decode())
    data = {"points": "50", "reason": "Goodwill", "idempotency_key": token}

    owner_client.post(action_url(member, "adjust"), data)
    second = owner_client.post(action_url(member, "adjust"), data)

    assert second.status_code == 302
    assert LedgerEntry.objects.filter(member=member).count() == 1
    assert audit_actions(member) == ["adjust"]


# --- transfer ----------------------------------------------------------------------------------


def test_the_receiver_is_found_by_name_email_or_card(owner_client, program, story):
    member, _card, _coupon, friend = story
    friend_card = Card.objects.create(
        program=program, member=friend, number="7000111122223333", status="active", created_at=friend.enrolled_at
    )
    MemberFactory(program=ProgramFactory(), first_name="Hugo", last_name="Elsewhere")  # another program
    url = reverse("dashboard:member_search")

    for term in ("Hugo", "hugo pe", friend.email[:6], friend_card.number[:10]):
        html = owner_client.get(url, {"q": term, "for": member.pk}).content.decode()
        assert f'value="{friend.pk}"' in html, term
        assert "Elsewhere" not in html
        assert f'value="{member.pk}"' not in html  # never the sender


def test_a_transfer_moves_points_and_audits_both_members(owner_client, story):
    member, _card, _coupon, friend = story
    available = member.available
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(
        action_url(member, "transfer"),
        {"to_member": friend.pk, "points": "100", "reason": "Household merge", "idempotency_key": token},
    )

    assert response.status_code == 302
    member.refresh_from_db()
    friend.refresh_from_db()
    assert (member.available, friend.available) == (available - 100, 100)
    assert audit_actions(member)[-1] == audit_actions(friend)[-1] == "transfer"


def test_a_transfer_to_another_programs_member_is_a_form_error(owner_client, story, other_program_member):
    member = story[0]
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(
        action_url(member, "transfer"),
        {"to_member": other_program_member.pk, "points": "100", "reason": "x", "idempotency_key": token},
    )

    assert response.status_code == 400
    assert "to_member" in response.context["forms"]["transfer"].errors
    assert not StaffAction.objects.filter(action="transfer").exists()


def test_a_transfer_of_more_than_available_is_refused_on_the_form(owner_client, story):
    member, _card, _coupon, friend = story
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(
        action_url(member, "transfer"),
        {"to_member": friend.pk, "points": "999999", "reason": "x", "idempotency_key": token},
    )

    assert response.status_code == 400
    assert response.context["forms"]["transfer"].errors
    assert not StaffAction.objects.filter(action="transfer").exists()


# --- block, card, note -----------------------------------------------------------------------


def test_block_needs_a_reason_and_unblock_undoes_it(owner_client, member):
    assert owner_client.post(action_url(member, "block"), {"reason": " "}).status_code == 400
    member.refresh_from_db()
    assert member.status == "active"

    owner_client.post(action_url(member, "block"), {"reason": "Card fraud reported"})
    member.refresh_from_db()
    assert member.status == Member.Status.BLOCKED
    owner_client.post(action_url(member, "unblock"), {"reason": "Cleared"})
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE
    assert audit_actions(member) == ["block", "unblock"]
    assert StaffAction.objects.get(action="block").reason == "Card fraud reported"


def test_replacing_a_card(owner_client, story):
    member, card, _coupon, _friend = story

    response = owner_client.post(action_url(member, "card_replace", card.pk), {"reason": "Lost"})

    assert response.status_code == 302
    card.refresh_from_db()
    assert card.status == "blocked"
    assert card.replaced_by.member == member
    action = StaffAction.objects.get(action="card_replace")
    assert action.details == {"old_card": card.number, "new_card": card.replaced_by.number}


def test_another_members_card_is_not_found(owner_client, story, other_member):
    card = story[1]
    assert owner_client.post(action_url(other_member, "card_replace", card.pk)).status_code == 404


def test_a_note_is_kept_and_audited(owner_client, member):
    response = owner_client.post(action_url(member, "note"), {"text": "Called about a lost parcel."})

    assert response.status_code == 302
    assert MemberNote.objects.get(member=member).text == "Called about a lost parcel."
    assert audit_actions(member) == ["note"]
    assert owner_client.post(action_url(member, "note"), {"text": ""}).status_code == 400


# --- rewards, coupons, emails ------------------------------------------------------------------


def test_redeem_then_cancel_then_the_points_are_back(owner_client, program, member):
    earn(member, 1000)
    reward = RewardFactory(program=program, name="Mug", cost_points=400)
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(action_url(member, "redeem"), {"reward": reward.pk, "idempotency_key": token})

    assert response.status_code == 302
    coupon = Redemption.objects.get(member=member)
    member.refresh_from_db()
    assert member.available == 600
    owner_client.post(action_url(member, "coupon_cancel"), {"coupon": coupon.pk, "reason": "Wrong reward"})
    member.refresh_from_db()
    coupon.refresh_from_db()
    assert (member.available, coupon.status) == (1000, "cancelled")
    assert audit_actions(member) == ["redeem", "coupon_cancel"]


def test_redeeming_more_than_the_balance_is_a_form_error(owner_client, program, member):
    reward = RewardFactory(program=program, cost_points=400)
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(action_url(member, "redeem"), {"reward": reward.pk, "idempotency_key": token})

    assert response.status_code == 400
    assert response.context["forms"]["redeem"].non_field_errors()
    assert not Redemption.objects.exists()


def test_using_a_coupon_and_resending_its_email(owner_client, story):
    member, _card, coupon, _friend = story

    owner_client.post(action_url(member, "coupon_use"), {"coupon": coupon.pk, "order_id": "ORD-2002"})
    owner_client.post(action_url(member, "resend"), {"coupon": coupon.pk})

    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_id) == ("used", "ORD-2002")
    message = EmailMessage.objects.get(member=member, source=f"redemption:{coupon.pk}")
    assert message.status == "queued"
    assert audit_actions(member)[-2:] == ["coupon_use", "email_resend"]


def test_another_members_coupon_is_not_found(owner_client, story, other_member):
    coupon = story[2]
    response = owner_client.post(action_url(other_member, "coupon_cancel"), {"coupon": coupon.pk})
    assert response.status_code == 404


# --- refunds -----------------------------------------------------------------------------------


def test_refunding_an_order_takes_its_points_back(owner_client, story):
    member = story[0]
    before = member.available
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(
        action_url(member, "refund"),
        {"order_id": "ORD-1001", "amount": "60.00", "reason": "Returned the grinder", "idempotency_key": token},
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.available == before - 600  # 120 EUR earned 1,200; refunds of 80 of 120 take 800 in all
    action = StaffAction.objects.get(action="refund")
    assert action.details["order_id"] == "ORD-1001"
    assert action.reason == "Returned the grinder"


def test_refunding_more_than_the_order_is_a_form_error(owner_client, story):
    member = story[0]
    token = form_token(owner_client.get(page_url(member)).content.decode())

    response = owner_client.post(
        action_url(member, "refund"),
        {"order_id": "ORD-1001", "amount": "500", "reason": "x", "idempotency_key": token},
    )

    assert response.status_code == 400
    assert not StaffAction.objects.filter(action="refund").exists()


def test_refunding_another_members_order_is_refused(owner_client, story, other_member):
    token = form_token(owner_client.get(page_url(other_member)).content.decode())
    response = owner_client.post(
        action_url(other_member, "refund"),
        {"order_id": "ORD-1001", "amount": "5", "reason": "x", "idempotency_key": token},
    )
    assert response.status_code == 400


# --- the ledger --------------------------------------------------------------------------------


def test_the_ledger_pages_by_keyset_and_filters_by_kind(owner_client, owner, member):
    for i in range(30):
        earn(member, 10 + i, reason=f"Visit {i}")
    services.points_adjust(program=member.program, member_id=member.pk, points=-5, reason="Fix", actor=owner)
    url = reverse("dashboard:member_ledger", args=[member.pk])

    first = owner_client.get(url)
    entries = first.context["ledger"].entries
    assert len(entries) == 25
    assert entries[0].reason == "Fix"
    second = owner_client.get(url, {"before": first.context["ledger"].next_before})
    assert len(second.context["ledger"].entries) == 6
    assert second.context["ledger"].next_before is None
    only_adjust = owner_client.get(url, {"kind": "adjust"}).context["ledger"].entries
    assert [e.reason for e in only_adjust] == ["Fix"]
    assert owner_client.get(url, {"since": "2999-01-01"}).context["ledger"].entries == []
    assert owner_client.get(url, {"since": "not a date", "before": "x"}).status_code == 200


def test_the_audit_is_append_only(owner, member):
    from django.db import DatabaseError, transaction

    action = services.staff_action_record(actor=owner, action="note", program=member.program, member=member)
    with pytest.raises(DatabaseError), transaction.atomic():
        StaffAction.objects.filter(pk=action.pk).update(reason="changed")
    with pytest.raises(DatabaseError), transaction.atomic():
        StaffAction.objects.filter(pk=action.pk).delete()


def test_money_like_actions_need_a_reason_in_the_audit(owner, member):
    from loyalty import errors

    with pytest.raises(errors.ReasonRequired):
        services.staff_action_record(actor=owner, action="adjust", program=member.program, member=member)


def test_the_page_reads_a_few_queries_whatever_the_history(owner_client, story, django_assert_max_num_queries):
    member = story[0]
    for _ in range(40):
        earn(member, 5)
    with django_assert_max_num_queries(45):
        owner_client.get(page_url(member))


def test_amounts_are_decimal(story):
    assert isinstance(story[0].activities.first().amount, Decimal)


def test_the_audit_reads_as_sentences(owner_client, owner, story):
    member, card, _coupon, friend = story
    owner_client.post(action_url(member, "card_replace", card.pk))
    token = form_token(owner_client.get(page_url(member)).content.decode())
    owner_client.post(
        action_url(member, "transfer"),
        {"to_member": friend.pk, "points": "100", "reason": "Household", "idempotency_key": token},
    )

    html = owner_client.get(page_url(member)).content.decode()

    card.refresh_from_db()
    assert f"card {card.number} replaced by {card.replaced_by.number}" in html
    assert f"-100 points to member #{friend.pk}" in html


@pytest.mark.parametrize("model", ["staffaction", "adjustmentrequest", "membernote"])
def test_the_admin_lists_of_the_audit_render(owner_client, story, model):
    member = story[0]
    services.staff_action_record(actor=StaffFactory(), action="note", program=member.program, member=member)

    response = owner_client.get(reverse(f"admin:loyalty_{model}_changelist"), follow=True)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/admin/dashboard/members/99999999999999999999999/",
        "/admin/dashboard/members/99999999999999999999999/ledger/",
    ],
)
def test_an_id_past_bigint_is_not_found(owner_client, url):
    assert owner_client.get(url).status_code == 404


def test_bad_ids_in_posts_are_not_found_or_form_errors(owner_client, member):
    huge = "99999999999999999999999"
    assert owner_client.post(f"/admin/dashboard/members/{member.pk}/cards/{huge}/replace/").status_code == 404
    assert owner_client.post(action_url(member, "coupon_cancel"), {"coupon": huge}).status_code in (400, 404)
    assert owner_client.post(action_url(member, "coupon_cancel"), {"coupon": "abc"}).status_code == 400
    assert owner_client.post(f"/admin/dashboard/adjustments/{huge}/approve/").status_code == 404
    search = owner_client.get(reverse("dashboard:member_search"), {"q": "ab", "for": huge})
    assert search.status_code == 404
