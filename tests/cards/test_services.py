"""Card lifecycle: look-up, digital card on enrolment, assignment, enrolment by an unassigned
card, claiming with a PIN, block / unblock / replace, and every refusal. Real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, transaction

from cards import errors, numbers, selectors, services
from cards.models import Card, CardEvent
from loyalty import errors as loyalty_errors
from loyalty import services as loyalty_services
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_problems
from tests.loyalty.factories import MemberFactory, ProgramFactory

from .factories import CardFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def with_bad_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def events_of(card: Card) -> list[tuple[str, int | None, object, str]]:
    """(kind, member id, actor, note) of the card's events, newest first."""
    return [(e.kind, e.member_id, e.actor, e.note) for e in CardEvent.objects.filter(card=card).order_by("-id")]


def give_points(member: Member, points: int, *, occurred_at: dt.datetime = T0) -> None:
    loyalty_services.points_earn(
        program=member.program, member_id=member.pk, points=points, occurred_at=occurred_at, now=occurred_at
    )


# --------------------------------------------------------------------------------------------
# Look-up


def test_lookup_refuses_a_wrong_check_digit_without_any_query(program, unassigned_card, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(errors.InvalidCardNumber) as exc:
        selectors.card_lookup(program=program, number=with_bad_check_digit(unassigned_card.number))
    assert exc.value.code == "invalid_card_number"


@pytest.mark.parametrize("typed", ["", "abc", "12345", "7" * 40, "4111-1111-1111-111x"])
def test_lookup_refuses_malformed_input_without_any_query(program, typed, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(errors.InvalidCardNumber):
        selectors.card_lookup(program=program, number=typed)


def test_lookup_finds_a_card_typed_with_spaces_and_dashes_and_joins_its_member(
    program, active_card, django_assert_num_queries
):
    n = active_card.number
    typed = f"{n[:4]} {n[4:8]}-{n[8:]}"
    with django_assert_num_queries(1):
        card = selectors.card_lookup(program=program, number=typed)
        assert card.member.pk == active_card.member_id


def test_lookup_of_an_unknown_well_formed_number_is_not_found(program):
    number = numbers.random_number(program.card_prefix, program.card_number_length)
    with pytest.raises(errors.CardNotFound) as exc:
        selectors.card_lookup(program=program, number=number)
    assert exc.value.code == "card_not_found"
    assert isinstance(exc.value, loyalty_errors.NotFound)


def test_lookup_does_not_find_a_card_of_another_program(other_program, unassigned_card):
    with pytest.raises(errors.CardNotFound):
        selectors.card_lookup(program=other_program, number=unassigned_card.number)


def test_member_cards_lists_the_members_cards_newest_first(member, active_card):
    newer = CardFactory(member=member, digital=True)
    CardFactory(program=member.program)
    assert list(selectors.member_cards(member=member)) == [newer, active_card]


# --------------------------------------------------------------------------------------------
# Digital card on enrolment


def test_issue_digital_gives_an_active_digital_card_with_a_number_of_the_program(member):
    card = services.card_issue_digital(member=member, now=T0)
    card.refresh_from_db()
    assert (card.kind, card.status, card.member, card.program) == ("digital", "active", member, member.program)
    assert card.number.startswith(member.program.card_prefix)
    assert len(card.number) == member.program.card_number_length
    assert numbers.is_well_formed(card.number)
    assert card.assigned_at == T0


def test_a_new_member_gets_one_digital_card_after_the_enrolment_commits(program, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        member, created = loyalty_services.member_enrol(program=program, email="new@example.com")
        assert not Card.objects.filter(member=member).exists()  # not before the commit
    assert created
    assert len([c for c in callbacks if "message_queue" not in c.__qualname__]) == 1  # the welcome email aside
    cards = list(Card.objects.filter(member=member))
    assert [(c.kind, c.status) for c in cards] == [("digital", "active")]


def test_the_enrolment_signal_twice_still_gives_one_digital_card(program, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        member, _ = loyalty_services.member_enrol(program=program, email="twice@example.com")
    callbacks[0]()  # a second delivery of member_enrolled (e.g. a retried job)
    assert Card.objects.filter(member=member).count() == 1


def test_enrolling_again_with_a_known_external_id_issues_no_second_card(program, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        member, _ = loyalty_services.member_enrol(program=program, external_id="shop-1")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again, created = loyalty_services.member_enrol(program=program, external_id="shop-1")
    assert (again, created, callbacks) == (member, False, [])
    assert Card.objects.filter(member=member).count() == 1


def test_a_member_enrolled_with_a_card_gets_no_digital_card(
    program, unassigned_card, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        member, _ = loyalty_services.member_enrol(program=program, email="with-card@example.com")
        services.card_assign(program=program, number=unassigned_card.number, member=member)
    assert list(Card.objects.filter(member=member)) == [unassigned_card]


def test_a_failing_card_issue_does_not_break_the_enrolment(program, monkeypatch, django_capture_on_commit_callbacks):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "card_issue_digital_if_cardless", broken)
    with django_capture_on_commit_callbacks(execute=True):
        member, created = loyalty_services.member_enrol(program=program, email="x@example.com")
    assert created
    assert Member.objects.filter(pk=member.pk).exists()


# --------------------------------------------------------------------------------------------
# Number allocation


def test_a_number_collision_is_drawn_again(member, unassigned_card, monkeypatch):
    draws = iter([unassigned_card.number, unassigned_card.number])
    real = numbers.random_number
    monkeypatch.setattr(numbers, "random_number", lambda prefix, length: next(draws, None) or real(prefix, length))
    card = services.card_issue_digital(member=member)
    assert card.pk is not None
    assert card.number != unassigned_card.number
    assert Card.objects.filter(member=member).count() == 1


def test_a_full_number_space_gives_up_after_a_few_draws_and_writes_nothing(member, unassigned_card, monkeypatch):
    monkeypatch.setattr(numbers, "random_number", lambda prefix, length: unassigned_card.number)
    with pytest.raises(loyalty_errors.Conflict):
        services.card_issue_digital(member=member)
    assert not Card.objects.filter(member=member).exists()


# --------------------------------------------------------------------------------------------
# Assigning


def test_assign_makes_an_unassigned_card_the_members_active_card(program, member, unassigned_card):
    card = services.card_assign(program=program, number=unassigned_card.number, member=member, now=T0)
    unassigned_card.refresh_from_db()
    assert (unassigned_card.status, unassigned_card.member, unassigned_card.assigned_at) == ("active", member, T0)
    assert card.pk == unassigned_card.pk


def test_assign_refuses_an_assigned_card(program, other_member, active_card):
    with pytest.raises(errors.CardNotAssignable) as exc:
        services.card_assign(program=program, number=active_card.number, member=other_member)
    assert (exc.value.code, exc.value.details["status"]) == ("card_not_assignable", "active")
    active_card.refresh_from_db()
    assert active_card.member_id != other_member.pk


def test_assign_refuses_a_blocked_card(program, other_member, blocked_card):
    with pytest.raises(errors.CardNotAssignable) as exc:
        services.card_assign(program=program, number=blocked_card.number, member=other_member)
    assert exc.value.details["status"] == "blocked"


def test_assign_refuses_a_void_card(program, member):
    card = CardFactory(program=program, status=Card.Status.VOID)
    with pytest.raises(errors.CardNotAssignable) as exc:
        services.card_assign(program=program, number=card.number, member=member)
    assert exc.value.details["status"] == "void"


def test_assign_refuses_a_member_of_another_program(program, unassigned_card):
    stranger = MemberFactory(program=ProgramFactory())
    with pytest.raises(loyalty_errors.MemberNotFound):
        services.card_assign(program=program, number=unassigned_card.number, member=stranger)
    unassigned_card.refresh_from_db()
    assert unassigned_card.status == "unassigned"


def test_assign_refuses_a_wrong_check_digit_without_any_query(
    program, member, unassigned_card, django_assert_num_queries
):
    with django_assert_num_queries(0), pytest.raises(errors.InvalidCardNumber):
        services.card_assign(program=program, number=with_bad_check_digit(unassigned_card.number), member=member)


def test_assign_refuses_an_unknown_number(program, member):
    with pytest.raises(errors.CardNotFound):
        services.card_assign(
            program=program,
            number=numbers.random_number(program.card_prefix, program.card_number_length),
            member=member,
        )


def test_assign_by_staff_leaves_an_event_with_the_staff_user(program, member, unassigned_card, staff):
    services.card_assign(program=program, number=unassigned_card.number, member=member, actor=staff, now=T0)
    assert events_of(unassigned_card) == [("assigned", member.pk, staff, "")]
    assert CardEvent.objects.get(card=unassigned_card).at == T0


# --------------------------------------------------------------------------------------------
# The member a card identifies (activity service)


def test_member_for_an_active_card_is_its_member_in_one_query(program, active_card, django_assert_num_queries):
    with django_assert_num_queries(1):
        member = services.member_for_card(program=program, number=active_card.number)
        assert member.program == program
    assert member.pk == active_card.member_id


def test_member_for_an_unassigned_card_enrols_an_anonymous_member_and_assigns_the_card(
    program, unassigned_card, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        member = services.member_for_card(program=program, number=unassigned_card.number, now=T0)
    member.refresh_from_db()
    unassigned_card.refresh_from_db()
    assert (member.enrollment_channel, member.external_id, member.email) == ("card", None, "")
    assert (unassigned_card.status, unassigned_card.member_id) == ("active", member.pk)
    assert unassigned_card.claimed_at is None
    assert list(Card.objects.filter(member=member)) == [unassigned_card]  # no digital card besides
    assert services.member_for_card(program=program, number=unassigned_card.number) == member


@pytest.mark.parametrize("status", ["blocked", "void"])
def test_member_for_a_blocked_or_void_card_is_refused(program, member, status):
    card = CardFactory(program=program, member=member if status == "blocked" else None, status=status)
    with pytest.raises(errors.CardBlocked) as exc:
        services.member_for_card(program=program, number=card.number)
    assert (exc.value.code, exc.value.details["status"]) == ("card_blocked", status)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_purchases_on_one_new_card_at_once_enrol_one_member():
    program = ProgramFactory()
    card = CardFactory(program=program)
    n = 4
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                member = services.member_for_card(program=program, number=card.number)
                loyalty_services.points_earn(program=program, member_id=member.pk, points=10)
            results[i] = member.pk
        except Exception as exc:  # reported below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    assert Member.objects.filter(program=program).count() == 1
    card.refresh_from_db()
    assert card.member_id == results[0]
    assert Member.objects.get(pk=results[0]).available == 10 * n
    assert list(ledger_problems()) == []


# --------------------------------------------------------------------------------------------
# Claiming


def test_claiming_the_card_of_an_anonymous_member_fills_the_profile(program, anonymous_card, anonymous_member):
    member = services.card_claim(
        program=program,
        number=anonymous_card.number,
        pin=numbers.pin_for(anonymous_card.number),
        email="Claire@Example.com",
        first_name="Claire",
        last_name="Dupont",
        now=T0,
    )
    member.refresh_from_db()
    anonymous_card.refresh_from_db()
    assert member.pk == anonymous_member.pk
    assert (member.email, member.first_name, member.last_name) == ("claire@example.com", "Claire", "Dupont")
    assert anonymous_card.claimed_at == T0


def test_claiming_an_unassigned_card_enrols_a_member_with_the_card(
    program, unassigned_card, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        member = services.card_claim(
            program=program,
            number=unassigned_card.number,
            pin=numbers.pin_for(unassigned_card.number),
            email="new@example.com",
            now=T0,
        )
    unassigned_card.refresh_from_db()
    assert (unassigned_card.status, unassigned_card.member_id, unassigned_card.claimed_at) == ("active", member.pk, T0)
    assert member.email == "new@example.com"
    assert list(Card.objects.filter(member=member)) == [unassigned_card]


def test_claiming_an_unassigned_card_into_a_member_assigns_it(program, member, unassigned_card):
    got = services.card_claim(
        program=program, number=unassigned_card.number, pin=numbers.pin_for(unassigned_card.number), into_member=member
    )
    unassigned_card.refresh_from_db()
    assert got == member
    assert (unassigned_card.member, unassigned_card.status) == (member, "active")


def test_claiming_into_an_existing_member_moves_the_points_with_their_expiry(
    program, member, anonymous_member, anonymous_card
):
    later = T0 + dt.timedelta(days=40)
    give_points(anonymous_member, 70, occurred_at=T0)
    give_points(anonymous_member, 30, occurred_at=later)
    give_points(member, 5, occurred_at=T0)
    got = services.card_claim(
        program=program,
        number=anonymous_card.number,
        pin=numbers.pin_for(anonymous_card.number),
        into_member=member,
        now=later + dt.timedelta(hours=1),
    )
    assert got == member
    member.refresh_from_db()
    anonymous_member.refresh_from_db()
    anonymous_card.refresh_from_db()
    assert (member.available, anonymous_member.available) == (105, 0)
    assert (anonymous_card.member, anonymous_card.claimed_at) == (member, later + dt.timedelta(hours=1))
    moved = {e.expires_at: e.points for e in LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.TRANSFER)}
    assert moved == {program.expiry_for(T0): 70, program.expiry_for(later): 30}
    assert list(ledger_problems()) == []


def test_claiming_into_a_member_moves_pending_points_with_their_dates(
    program, member, anonymous_member, anonymous_card
):
    program.pending_days = 14
    program.save()
    give_points(anonymous_member, 50, occurred_at=T0)
    services.card_claim(
        program=program,
        number=anonymous_card.number,
        pin=numbers.pin_for(anonymous_card.number),
        into_member=member,
        now=T0 + dt.timedelta(days=1),
    )
    member.refresh_from_db()
    assert (member.available, member.pending) == (0, 50)
    moved = LedgerEntry.objects.get(member=member, kind=LedgerEntry.Kind.TRANSFER)
    assert (moved.available_at, moved.expires_at) == (T0 + dt.timedelta(days=14), program.expiry_for(T0))
    anonymous_card.refresh_from_db()
    assert anonymous_card.member == member
    assert list(ledger_problems()) == []


def test_claiming_into_a_member_moves_points_whose_return_window_has_passed(
    program, member, anonymous_member, anonymous_card
):
    program.pending_days = 14
    program.save()
    give_points(anonymous_member, 50, occurred_at=T0)  # still pending on the row: no release job ran
    services.card_claim(
        program=program,
        number=anonymous_card.number,
        pin=numbers.pin_for(anonymous_card.number),
        into_member=member,
        now=T0 + dt.timedelta(days=15),
    )
    member.refresh_from_db()
    assert member.available == 50
    assert list(ledger_problems()) == []


def test_claiming_twice_is_refused(program, anonymous_card):
    pin = numbers.pin_for(anonymous_card.number)
    services.card_claim(program=program, number=anonymous_card.number, pin=pin, email="a@example.com")
    with pytest.raises(errors.AlreadyClaimed) as exc:
        services.card_claim(program=program, number=anonymous_card.number, pin=pin, email="b@example.com")
    assert exc.value.code == "already_claimed"
    assert isinstance(exc.value, loyalty_errors.Conflict)
    anonymous_card.member.refresh_from_db()
    assert anonymous_card.member.email == "a@example.com"


def test_the_card_of_an_identified_member_cannot_be_claimed_into_another(program, active_card, other_member):
    give_points(active_card.member, 40)
    with pytest.raises(errors.AlreadyClaimed):
        services.card_claim(
            program=program,
            number=active_card.number,
            pin=numbers.pin_for(active_card.number),
            into_member=other_member,
        )
    active_card.member.refresh_from_db()
    assert active_card.member.available == 40


def test_claiming_the_card_of_an_identified_member_changes_no_profile(program, active_card):
    before = (active_card.member.email, active_card.member.first_name)
    services.card_claim(
        program=program, number=active_card.number, pin=numbers.pin_for(active_card.number), email="x@example.com"
    )
    active_card.member.refresh_from_db()
    assert (active_card.member.email, active_card.member.first_name) == before


def test_a_wrong_pin_is_refused_and_changes_nothing(program, anonymous_card):
    with pytest.raises(errors.WrongPin) as exc:
        services.card_claim(program=program, number=anonymous_card.number, pin="000000x", email="a@example.com")
    assert exc.value.code == "wrong_pin"
    assert exc.value.details["locked"] is False
    assert exc.value.details["attempts_left"] == 4
    anonymous_card.refresh_from_db()
    assert anonymous_card.claimed_at is None


def wrong_pin_for(number: str) -> str:
    return str((int(numbers.pin_for(number)) + 1) % 10**6).zfill(6)


def test_after_five_wrong_pins_even_the_right_pin_is_refused(program, anonymous_card, settings):
    wrong = wrong_pin_for(anonymous_card.number)
    for attempt in range(1, 6):
        with pytest.raises(errors.WrongPin) as exc:
            services.card_claim(program=program, number=anonymous_card.number, pin=wrong)
        assert exc.value.details["locked"] is (attempt == 5)
    with pytest.raises(errors.WrongPin) as exc:
        services.card_claim(program=program, number=anonymous_card.number, pin=numbers.pin_for(anonymous_card.number))
    assert exc.value.details["locked"] is True
    assert exc.value.details["retry_after"] == services.PIN_LOCKOUT_SECONDS
    anonymous_card.refresh_from_db()
    assert anonymous_card.claimed_at is None


def test_four_wrong_pins_leave_the_right_one_working(program, anonymous_card):
    wrong = wrong_pin_for(anonymous_card.number)
    for left in (4, 3, 2, 1):
        with pytest.raises(errors.WrongPin) as exc:
            services.card_claim(program=program, number=anonymous_card.number, pin=wrong)
        assert exc.value.details["attempts_left"] == left
    services.card_claim(program=program, number=anonymous_card.number, pin=numbers.pin_for(anonymous_card.number))
    anonymous_card.refresh_from_db()
    assert anonymous_card.claimed_at is not None


def test_the_lock_out_counts_per_card(program, anonymous_card, unassigned_card):
    wrong = wrong_pin_for(anonymous_card.number)
    for _ in range(5):
        with pytest.raises(errors.WrongPin):
            services.card_claim(program=program, number=anonymous_card.number, pin=wrong)
    services.card_claim(program=program, number=unassigned_card.number, pin=numbers.pin_for(unassigned_card.number))


def test_the_lock_out_ends_when_its_window_has_passed(program, anonymous_card):
    from django.core.cache import cache

    wrong = wrong_pin_for(anonymous_card.number)
    for _ in range(5):
        with pytest.raises(errors.WrongPin):
            services.card_claim(program=program, number=anonymous_card.number, pin=wrong)
    cache.delete(f"cards:pin-failures:{anonymous_card.pk}")  # what the cache's expiry does after 15 minutes
    services.card_claim(program=program, number=anonymous_card.number, pin=numbers.pin_for(anonymous_card.number))


def test_claiming_a_blocked_card_is_refused(program, blocked_card):
    with pytest.raises(errors.CardBlocked):
        services.card_claim(program=program, number=blocked_card.number, pin=numbers.pin_for(blocked_card.number))


def test_claiming_into_a_member_of_another_program_is_refused(program, anonymous_card):
    stranger = MemberFactory(program=ProgramFactory())
    with pytest.raises(loyalty_errors.MemberNotFound):
        services.card_claim(
            program=program,
            number=anonymous_card.number,
            pin=numbers.pin_for(anonymous_card.number),
            into_member=stranger,
        )


def test_claiming_with_a_bad_email_is_refused_and_changes_nothing(program, anonymous_card):
    with pytest.raises(loyalty_errors.InvalidInput):
        services.card_claim(
            program=program, number=anonymous_card.number, pin=numbers.pin_for(anonymous_card.number), email="nope"
        )
    anonymous_card.refresh_from_db()
    assert anonymous_card.claimed_at is None


# --------------------------------------------------------------------------------------------
# Block, unblock, replace


def test_block_makes_the_card_useless_and_keeps_the_member(program, active_card, staff):
    services.card_block(card=active_card, actor=staff, now=T0)
    assert (active_card.status, active_card.blocked_at, active_card.member_id) == ("blocked", T0, active_card.member_id)
    with pytest.raises(errors.CardBlocked):
        services.member_for_card(program=program, number=active_card.number)
    assert events_of(active_card) == [("blocked", active_card.member_id, staff, "")]


def test_blocking_a_blocked_card_changes_nothing(blocked_card):
    before = blocked_card.blocked_at
    services.card_block(card=blocked_card, now=T0)
    blocked_card.refresh_from_db()
    assert (blocked_card.status, blocked_card.blocked_at) == ("blocked", before)
    assert events_of(blocked_card) == []


def test_blocking_stock_keeps_it_without_member_and_refuses_every_use(program, member, unassigned_card, staff):
    services.card_block(card=unassigned_card, actor=staff, now=T0)
    unassigned_card.refresh_from_db()
    assert (unassigned_card.status, unassigned_card.member_id, unassigned_card.blocked_at) == ("blocked", None, T0)
    assert events_of(unassigned_card) == [("blocked", None, staff, "stock card")]
    with pytest.raises(errors.CardBlocked):  # a purchase on a card from the stolen box
        services.member_for_card(program=program, number=unassigned_card.number)
    with pytest.raises(errors.CardNotAssignable):
        services.card_assign(program=program, number=unassigned_card.number, member=member)
    with pytest.raises(errors.CardBlocked):
        services.card_claim(program=program, number=unassigned_card.number, pin=numbers.pin_for(unassigned_card.number))
    with pytest.raises(errors.CardStatusInvalid):  # no member to replace it for
        services.card_replace(card=unassigned_card)
    assert not Member.objects.filter(enrollment_channel=Member.Channel.CARD).exists()


def test_unblocking_blocked_stock_puts_it_back_in_stock(program, member, unassigned_card, staff):
    services.card_block(card=unassigned_card, actor=staff, now=T0)
    card = services.card_unblock(card=unassigned_card, actor=staff, now=T0)
    assert (card.status, card.member_id, card.blocked_at) == ("unassigned", None, None)
    unassigned_card.refresh_from_db()
    assert unassigned_card.status == "unassigned"
    assert events_of(unassigned_card)[0] == ("unblocked", None, staff, "back to stock")
    services.card_assign(program=program, number=unassigned_card.number, member=member)  # usable again


def test_a_void_card_cannot_be_blocked(program):
    card = CardFactory(program=program, status=Card.Status.VOID)
    with pytest.raises(errors.CardStatusInvalid) as exc:
        services.card_block(card=card)
    assert exc.value.details["status"] == "void"
    assert events_of(card) == []


def test_unblock_makes_a_blocked_card_active_again(program, blocked_card):
    services.card_unblock(card=blocked_card)
    blocked_card.refresh_from_db()
    assert (blocked_card.status, blocked_card.blocked_at) == ("active", None)
    assert services.member_for_card(program=program, number=blocked_card.number) == blocked_card.member
    assert events_of(blocked_card) == [("unblocked", blocked_card.member_id, None, "")]


@pytest.mark.parametrize("status", ["unassigned", "active"])
def test_unblocking_a_card_that_is_not_blocked_changes_nothing(program, member, status):
    card = CardFactory(program=program, member=member if status == "active" else None)
    assert services.card_unblock(card=card).status == status
    assert events_of(card) == []


def test_a_void_card_cannot_be_unblocked(program):
    card = CardFactory(program=program, status="void")
    with pytest.raises(errors.CardStatusInvalid):
        services.card_unblock(card=card)
    card.refresh_from_db()
    assert card.status == "void"


def test_replace_blocks_the_old_card_and_keeps_the_balance(program, active_card, staff):
    member = active_card.member
    give_points(member, 120)
    new = services.card_replace(card=active_card, actor=staff, now=T0)
    active_card.refresh_from_db()
    member.refresh_from_db()
    assert (active_card.status, active_card.replaced_by) == ("blocked", new)
    assert (new.status, new.member, new.kind, new.program) == ("active", member, active_card.kind, program)
    assert new.number != active_card.number
    assert numbers.is_well_formed(new.number)
    assert member.available == 120
    assert services.member_for_card(program=program, number=new.number) == member
    with pytest.raises(errors.CardBlocked):
        services.member_for_card(program=program, number=active_card.number)
    assert list(ledger_problems()) == []


def test_replace_with_a_stock_card_hands_that_card_out(program, active_card, unassigned_card):
    new = services.card_replace(card=active_card, new_number=unassigned_card.number)
    assert new.pk == unassigned_card.pk
    unassigned_card.refresh_from_db()
    assert (unassigned_card.status, unassigned_card.member_id) == ("active", active_card.member_id)


def test_replace_with_an_assigned_card_is_refused_and_changes_nothing(program, active_card, other_member):
    taken = CardFactory(member=other_member)
    with pytest.raises(errors.CardNotAssignable):
        services.card_replace(card=active_card, new_number=taken.number)
    active_card.refresh_from_db()
    assert (active_card.status, active_card.replaced_by) == ("active", None)


def test_a_replaced_card_keeps_its_claim_on_the_replacement(program, anonymous_card):
    services.card_claim(
        program=program, number=anonymous_card.number, pin=numbers.pin_for(anonymous_card.number), now=T0
    )
    anonymous_card.refresh_from_db()
    new = services.card_replace(card=anonymous_card)
    with pytest.raises(errors.AlreadyClaimed):
        services.card_claim(program=program, number=new.number, pin=numbers.pin_for(new.number))


def test_a_card_is_replaced_once_and_a_replaced_card_is_not_unblocked(active_card):
    services.card_replace(card=active_card)
    with pytest.raises(errors.CardStatusInvalid):
        services.card_replace(card=active_card)
    with pytest.raises(errors.CardStatusInvalid) as exc:
        services.card_unblock(card=active_card)
    assert "replaced_by" in exc.value.details


def test_a_blocked_card_can_be_replaced(blocked_card):
    new = services.card_replace(card=blocked_card, now=T0)
    blocked_card.refresh_from_db()
    assert blocked_card.replaced_by == new
    assert new.status == "active"


def test_an_unassigned_card_cannot_be_replaced(unassigned_card):
    with pytest.raises(errors.CardStatusInvalid):
        services.card_replace(card=unassigned_card)


# --------------------------------------------------------------------------------------------
# Events: one row per state change, in the change's transaction


def test_a_digital_card_issued_on_enrolment_has_an_issued_event_without_actor(
    program, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        member, _ = loyalty_services.member_enrol(program=program, email="events@example.com")
    card = Card.objects.get(member=member)
    assert events_of(card) == [("issued", member.pk, None, "")]


def test_a_purchase_on_stock_records_the_enrolment_and_the_claim_records_the_customer(program, unassigned_card):
    member = services.member_for_card(program=program, number=unassigned_card.number, now=T0)
    services.card_claim(
        program=program, number=unassigned_card.number, pin=numbers.pin_for(unassigned_card.number), email="c@x.org"
    )
    assert events_of(unassigned_card) == [
        ("claimed", member.pk, None, ""),
        ("enrolled", member.pk, None, ""),
    ]
    assert CardEvent.objects.get(card=unassigned_card, kind="enrolled").at == T0


def test_claiming_into_another_member_records_the_merge_with_the_points_moved(program, anonymous_card, member):
    give_points(anonymous_card.member, 40)
    services.card_claim(
        program=program, number=anonymous_card.number, pin=numbers.pin_for(anonymous_card.number), into_member=member
    )
    assert events_of(anonymous_card) == [
        ("merged", member.pk, None, f"from anonymous member {anonymous_card.member_id}: 40 points moved")
    ]


def test_a_replacement_records_both_cards(program, active_card, staff):
    new = services.card_replace(card=active_card, actor=staff, now=T0)
    member_id = active_card.member_id
    assert events_of(active_card) == [("replaced", member_id, staff, f"by card {new.number}")]
    assert events_of(new) == [("assigned", member_id, staff, f"replaces card {active_card.number}")]


def test_a_refusal_writes_no_event(program, other_member, active_card):
    with pytest.raises(errors.CardNotAssignable):
        services.card_assign(program=program, number=active_card.number, member=other_member)
    with pytest.raises(errors.WrongPin):
        services.card_claim(program=program, number=active_card.number, pin=wrong_pin_for(active_card.number))
    assert not CardEvent.objects.exists()


def test_an_event_is_rolled_back_with_its_change(program, member, unassigned_card):
    def assign_then_fail() -> None:
        with transaction.atomic():
            services.card_assign(program=program, number=unassigned_card.number, member=member)
            raise RuntimeError("the caller's transaction fails later")

    with pytest.raises(RuntimeError):
        assign_then_fail()
    unassigned_card.refresh_from_db()
    assert unassigned_card.status == "unassigned"
    assert not CardEvent.objects.exists()


def test_a_customers_action_records_no_actor_even_when_given_an_anonymous_user(program, member, unassigned_card):
    from django.contrib.auth.models import AnonymousUser

    services.card_assign(program=program, number=unassigned_card.number, member=member, actor=AnonymousUser())
    assert events_of(unassigned_card) == [("assigned", member.pk, None, "")]
