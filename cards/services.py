"""Every write of the cards app: one function per use case (docs/contributing.md).

Each runs in a transaction (the caller's, if one is open: the API, the activity service and
the member import compose them into theirs), locks the card row before it checks the card's
status (`lock_objects`), and raises a domain error of `cards.errors` / `loyalty.errors`
inside the transaction, so a refusal writes nothing. Points are never touched here except
through `loyalty.services` (a claim into another member moves points with
`points_transfer`): the balance lives on the member, never on a card.

Numbers are random (`cards.numbers`); the unique index on `Card.number` decides uniqueness.
A new number is inserted in a savepoint and drawn again on a collision, a few times.

Who/what/when: every state change writes one `CardEvent` row through `_record_event`, in the
same transaction as the change (a refusal or a rollback leaves no event). `actor` is the staff
user who acted, None for customers (a purchase, a claim) and the system. Set-based changes
write their events set-based too: `cards.batches.batch_discard` (voided) and the member import
(imported, issued). The card's own `assigned_at` / `claimed_at` / `blocked_at` columns keep
the when of its current state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Min, Q, Sum
from django.utils import timezone

from loyalty import errors as loyalty_errors
from loyalty import services as loyalty_services
from loyalty.lock_objects import members_for_update
from loyalty.models import LedgerEntry, Member, Program

from . import errors, lock_objects, numbers, signals
from .models import Card, CardEvent
from .selectors import card_lookup, well_formed_number

logger = logging.getLogger(__name__)

# A collision needs two equal random numbers among 10^(length - prefix - 1): a handful of
# draws is plenty; failing all of them means the number space of the program is full.
NUMBER_ATTEMPTS = 5
NUMBER_UNIQUE_CONSTRAINT = "cards_card_number_key"

# Claim PINs have 10^6 values: after PIN_MAX_FAILURES wrong PINs on a card within
# PIN_LOCKOUT_SECONDS the card refuses every PIN until the window has passed.
PIN_MAX_FAILURES = 5
PIN_LOCKOUT_SECONDS = 15 * 60

Status = Card.Status


EventKind = CardEvent.Kind
NOTE_LENGTH = CardEvent._meta.get_field("note").max_length


# --------------------------------------------------------------------------------------------
# Helpers


def _staff(actor: Any) -> Any:
    """The user to record as the actor: a saved, authenticated user, else None."""
    if getattr(actor, "pk", None) is None or not getattr(actor, "is_authenticated", False):
        return None
    return actor


def _record_event(
    *,
    card: Card,
    kind: str,
    actor: Any = None,
    note: str = "",
    when: dt.datetime | None = None,
) -> CardEvent:
    """The who/what/when of a card's state change: one `CardEvent` row with the card's member
    after the change, inserted in the caller's transaction, so a rolled-back change leaves no
    trace. `actor` is None for customers and the system. Queries: 1 insert."""
    event = CardEvent(
        card_id=card.pk,
        kind=EventKind(kind),
        member_id=card.member_id,
        actor=_staff(actor),
        at=when or timezone.now(),
        note=note[:NOTE_LENGTH],
    )
    event.save(force_insert=True)
    return event


def _full_clean(card: Card) -> None:
    """Field checks (number pattern, choices) without queries: the database enforces the
    foreign keys, the unique number and the status/member constraints."""
    try:
        card.full_clean(
            exclude=["program", "member", "batch", "replaced_by"], validate_unique=False, validate_constraints=False
        )
    except ValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        raise loyalty_errors.InvalidInput("Invalid card.", fields=fields) from exc


def _is_number_collision(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == NUMBER_UNIQUE_CONSTRAINT


def _insert_with_new_number(card: Card, program: Program) -> Card:
    """Give `card` a fresh random number of `program` and insert it. Each attempt runs in a
    savepoint, so a collision on the unique index costs one rolled-back insert, not the
    caller's transaction."""
    for _attempt in range(NUMBER_ATTEMPTS):
        card.number = numbers.random_number(program.card_prefix, program.card_number_length)
        _full_clean(card)
        try:
            with transaction.atomic():
                card.save(force_insert=True)
        except IntegrityError as exc:
            if not _is_number_collision(exc):
                raise
            card.pk = None
            continue
        return card
    raise loyalty_errors.Conflict(
        "Could not allocate a unique card number; try again.", program=program.slug, attempts=NUMBER_ATTEMPTS
    )


def _lock_card(*, program: Program, number: str) -> Card:
    """The card (number already normalized and well formed), locked."""
    card = lock_objects.card_by_number_for_update(program=program, number=number).first()
    if card is None:
        raise errors.CardNotFound("No card with this number.", field="card_number", number=number)
    return card


def _lock_card_by_id(card_id: int) -> Card:
    card = lock_objects.cards_for_update([card_id]).first()
    if card is None:
        raise errors.CardNotFound(f"No card {card_id}.", card_id=card_id)
    return card


def _check_member_program(member: Member, program: Program) -> None:
    if member.program_id != program.id:
        raise loyalty_errors.MemberNotFound(
            "The member belongs to another program.", member_id=member.pk, program=program.slug
        )


def _assign(card: Card, member: Member, now: dt.datetime, *, claimed: bool = False) -> None:
    """Make a locked unassigned card the member's active card."""
    card.member = member
    card.status = Status.ACTIVE
    card.assigned_at = now
    fields = ["member", "status", "assigned_at"]
    if claimed:
        card.claimed_at = now
        fields.append("claimed_at")
    card.save(update_fields=fields)


def _sync(target: Card, source: Card) -> Card:
    """Copy the locked row's state onto the caller's instance (it may be shown afterwards)."""
    for field in Card._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    return target


def _is_anonymous(member: Member) -> bool:
    """A member enrolled by a purchase on an unassigned card that nobody has claimed yet: no
    shop id, no email, no portal login."""
    return (
        member.enrollment_channel == Member.Channel.CARD
        and member.external_id is None
        and not member.email
        and member.user_id is None
    )


# --------------------------------------------------------------------------------------------
# Issuing and assigning


def card_issue_digital(*, member: Member, now: dt.datetime | None = None, actor: Any = None) -> Card:
    """Issue a new digital card, active, to `member` (a fresh random number of its program).
    Queries: the program if not loaded, 1 savepointed insert (+1 per rare number collision)."""
    now = now or timezone.now()
    program = member.program
    with transaction.atomic():
        card = Card(
            program=program,
            member=member,
            kind=Card.Kind.DIGITAL,
            status=Status.ACTIVE,
            created_at=now,
            assigned_at=now,
        )
        _insert_with_new_number(card, program)
        _record_event(card=card, kind=EventKind.ISSUED, actor=actor, when=now)
    return card


def card_issue_digital_if_cardless(*, member: Member, now: dt.datetime | None = None) -> Card | None:
    """Issue a digital card unless the member has a card of any kind or status (a card
    assigned at enrolment, or a card issued by an earlier call): safe to call twice and
    concurrently, the member row being locked while it checks. None when nothing was issued
    (also when the member no longer exists)."""
    with transaction.atomic():
        locked = lock_objects.member_for_update(member_id=member.pk).select_related("program").first()
        if locked is None or Card.objects.filter(member_id=member.pk).exists():
            return None
        return card_issue_digital(member=locked, now=now)


def card_assign(
    *, program: Program, number: str, member: Member, now: dt.datetime | None = None, actor: Any = None
) -> Card:
    """Assign an unassigned card of `program` to `member` (POS, API, admin, import).

    Refusals: `InvalidCardNumber` (no query), `CardNotFound` (no such card in this program),
    `MemberNotFound` (the member is of another program), `CardNotAssignable` with the card's
    `status` when it is assigned, blocked or void."""
    normalized = well_formed_number(number)
    _check_member_program(member, program)
    now = now or timezone.now()
    with transaction.atomic():
        card = _lock_card(program=program, number=normalized)
        if card.status != Status.UNASSIGNED:
            raise errors.CardNotAssignable(
                f"This card is {card.get_status_display().lower()}: only an unassigned card can be assigned.",
                number=normalized,
                status=card.status,
            )
        _assign(card, member, now)
        _record_event(card=card, kind=EventKind.ASSIGNED, actor=actor, when=now)
    return card


def member_for_card(*, program: Program, number: str, now: dt.datetime | None = None) -> Member:
    """The member a card identifies, for an activity reported with a card number.

    An active card: its member (1 query, no lock: the hot POS path). An unassigned card:
    a new anonymous member (channel `card`) is enrolled and the card assigned to it, with the
    card row locked, so that two purchases on one new card at once enrol one member (the
    second waits for the lock and then finds the card active). A blocked or void card:
    `CardBlocked`. The returned member's `program` is `program` (no further query)."""
    card = card_lookup(program=program, number=number)
    if card.status == Status.UNASSIGNED:
        now = now or timezone.now()
        with transaction.atomic():
            card = _lock_card(program=program, number=card.number)
            if card.status == Status.UNASSIGNED:
                member, _created = loyalty_services.member_enrol(program=program, channel=Member.Channel.CARD, now=now)
                _assign(card, member, now)
                _record_event(card=card, kind=EventKind.ENROLLED, when=now)
    if card.status != Status.ACTIVE:
        raise errors.CardBlocked(
            f"This card is {card.get_status_display().lower()}.", number=card.number, status=card.status
        )
    member = card.member
    member.program = program
    return member


# --------------------------------------------------------------------------------------------
# Claiming


def _pin_failures_key(card: Card) -> str:
    return f"cards:pin-failures:{card.pk}"


def _check_pin(card: Card, pin: Any) -> None:
    """Refuse a wrong PIN, and every PIN once PIN_MAX_FAILURES failed within the window:
    10^6 PINs at 5 guesses per 15 minutes take decades. Each attempt takes a slot with an
    atomic increment *before* the PIN is compared, so concurrent guesses cannot slip past
    the limit between a read and a write; a right PIN gives its slot back. The count lives in
    the cache (shared by all web processes with Redis), outside any transaction, so a
    refusal still counts."""
    key = _pin_failures_key(card)
    cache.add(key, 0, timeout=PIN_LOCKOUT_SECONDS)  # the window starts at the first attempt
    try:
        attempts = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=PIN_LOCKOUT_SECONDS)
        attempts = 1
    if attempts > PIN_MAX_FAILURES:
        raise errors.WrongPin(
            "Too many wrong PINs for this card. Try again later.",
            field="pin",
            locked=True,
            attempts_left=0,
            retry_after=PIN_LOCKOUT_SECONDS,
        )
    if numbers.pin_matches(card.number, "" if pin is None else str(pin)):
        with contextlib.suppress(ValueError):  # the window ended meanwhile
            cache.decr(key)
        return
    locked = attempts >= PIN_MAX_FAILURES
    raise errors.WrongPin(
        "Wrong PIN." + (" Too many wrong PINs for this card. Try again later." if locked else ""),
        field="pin",
        locked=locked,
        attempts_left=PIN_MAX_FAILURES - attempts,
        **({"retry_after": PIN_LOCKOUT_SECONDS} if locked else {}),
    )


def _movable_points(member_id: int, now: dt.datetime) -> tuple[int, int, dt.datetime | None]:
    """What a transfer of everything could move, read from the member's lots under the
    member lock: (available once due lots are released and overdue ones expired, points still
    in the return window, the earliest moment one of those becomes available)."""
    lots = LedgerEntry.objects.filter(member_id=member_id)
    usable = Q(remaining__gt=0) & (Q(released_at__isnull=False) | Q(available_at__lte=now))
    not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    sums = lots.aggregate(
        usable=Sum("remaining", filter=usable & not_expired, default=0),
        debt=Sum("remaining", filter=Q(remaining__lt=0), default=0),
        pending=Sum("remaining", filter=Q(remaining__gt=0, released_at__isnull=True, available_at__gt=now), default=0),
        pending_until=Min("available_at", filter=Q(remaining__gt=0, released_at__isnull=True, available_at__gt=now)),
    )
    return sums["usable"] + sums["debt"], sums["pending"], sums["pending_until"]


def _merge_into(*, program: Program, card: Card, into_member: Member, now: dt.datetime) -> int:
    """Move the anonymous member's points to `into_member` with the ledger's transfer (the
    points keep their expiry dates). Both member rows are locked in id order first, so no
    purchase on the card can add points between the count and the move. Returns the points
    moved."""
    anonymous = card.member
    list(members_for_update([anonymous.pk, into_member.pk]))
    movable, pending, _pending_until = _movable_points(anonymous.pk, now)
    total = movable + pending  # a member in debt has no lots left (debts are paid first)
    if total > 0:
        # Pending points move too and stay pending on the receiver until their own date.
        loyalty_services.points_transfer(
            program=program,
            from_member_id=anonymous.pk,
            to_member_id=into_member.pk,
            points=total,
            reason=f"Card {card.number} claimed",
            include_pending=True,
            now=now,
        )
    return max(total, 0)


def card_claim(
    *,
    program: Program,
    number: str,
    pin: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    into_member: Member | None = None,
    now: dt.datetime | None = None,
) -> Member:
    """A customer claims a card with its number and the PIN printed on it; returns the member
    who owns the card afterwards. A card is claimed once.

    - An unassigned card is assigned to `into_member`, or to a new member enrolled with the
      given email and names.
    - The card of an anonymous member (enrolled by a purchase on the card): without
      `into_member`, that member gets the email and names; with `into_member` (an existing
      member of the program), the anonymous member's points move to it with their expiry
      dates and the card is re-assigned to it.
    - The card of an identified member (assigned at the POS, a digital card): only that
      member may claim it (nothing else changes but `claimed_at`).

    Refusals: `InvalidCardNumber`, `CardNotFound`, `WrongPin` (details `locked: true` after
    too many failures; checked before the card's state, so it reveals nothing without the
    PIN), `AlreadyClaimed`, `CardBlocked`, `MemberNotFound` (`into_member` of another
    program), `MemberBlocked` (from the transfer), `InvalidInput`. Points still in their
    return window move too and stay pending until their own date."""
    card = card_lookup(program=program, number=number)
    _check_pin(card, pin)
    if into_member is not None:
        _check_member_program(into_member, program)
    now = now or timezone.now()
    profile = {"email": email, "first_name": first_name, "last_name": last_name}
    with transaction.atomic():
        member, moved = _claim_locked(
            program=program, number=card.number, profile=profile, into_member=into_member, now=now
        )
        if signals.card_claimed_in_transaction.has_listeners(Card):
            signals.card_claimed_in_transaction.send(
                sender=Card, program=program, member=member, card=card, points_moved=moved
            )
        transaction.on_commit(lambda: signals.card_claimed.send(sender=Card, program=program, member=member, card=card))
    cache.delete(_pin_failures_key(card))
    return member


def _claim_locked(
    *, program: Program, number: str, profile: dict[str, str], into_member: Member | None, now: dt.datetime
) -> tuple[Member, int]:
    """The claim's writes, card locked: (the member who owns the card now, points moved)."""
    card = _lock_card(program=program, number=number)
    if card.claimed_at is not None:
        raise errors.AlreadyClaimed("This card was already claimed.", number=card.number)
    if card.status in (Status.BLOCKED, Status.VOID):
        raise errors.CardBlocked(
            f"This card is {card.get_status_display().lower()}.", number=card.number, status=card.status
        )
    if card.status == Status.UNASSIGNED:
        if into_member is None:
            into_member, _created = loyalty_services.member_enrol(
                program=program, channel=Member.Channel.CARD, now=now, **profile
            )
        _assign(card, into_member, now, claimed=True)
        _record_event(card=card, kind=EventKind.CLAIMED, when=now)
        return into_member, 0
    owner = card.member
    if into_member is None or into_member.pk == owner.pk:
        if _is_anonymous(owner):
            changes = {name: value for name, value in profile.items() if value}
            if changes:
                loyalty_services.member_update(member=owner, **changes)
        card.claimed_at = now
        card.save(update_fields=["claimed_at"])
        _record_event(card=card, kind=EventKind.CLAIMED, when=now)
        return owner, 0
    if not _is_anonymous(owner):
        # The card already identifies a known customer: a PIN does not hand their points over.
        raise errors.AlreadyClaimed("This card belongs to another member.", number=card.number)
    moved = _merge_into(program=program, card=card, into_member=into_member, now=now)
    card.member = into_member
    card.claimed_at = now
    card.save(update_fields=["member", "claimed_at"])
    _record_event(
        card=card,
        kind=EventKind.MERGED,
        note=f"from anonymous member {owner.pk}: {moved} points moved",
        when=now,
    )
    return into_member, moved


# --------------------------------------------------------------------------------------------
# Block, unblock, replace


def card_block(*, card: Card, actor: Any = None, now: dt.datetime | None = None) -> Card:
    """Block a card so that it identifies nobody.

    - An active card (lost, stolen, misused): blocked, its member and balance untouched.
    - An unassigned stock card (a stolen box of cards): blocked with no member; a purchase on
      it, an assignment or a claim is refused until it is unblocked.

    Blocking a blocked card changes nothing (no event). A void card cannot be blocked
    (`CardStatusInvalid`). Queries: 2-3 (lock, update, event)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock_card_by_id(card.pk)
        if locked.status in (Status.ACTIVE, Status.UNASSIGNED):
            stock = locked.status == Status.UNASSIGNED
            locked.status = Status.BLOCKED
            locked.blocked_at = now
            locked.save(update_fields=["status", "blocked_at"])
            _record_event(
                card=locked, kind=EventKind.BLOCKED, actor=actor, note="stock card" if stock else "", when=now
            )
        elif locked.status != Status.BLOCKED:
            raise errors.CardStatusInvalid(
                f"A card that is {locked.get_status_display().lower()} cannot be blocked.",
                number=locked.number,
                status=locked.status,
            )
    return _sync(card, locked)


def member_cards_block(*, member: Member, actor: Any = None, now: dt.datetime | None = None) -> int:
    """Block every active card of `member` (an anonymised member: docs/decisions.md). Returns
    how many were blocked."""
    blocked = 0
    for card in Card.objects.filter(member=member, status=Status.ACTIVE).order_by("pk"):
        card_block(card=card, actor=actor, now=now)
        blocked += 1
    return blocked


def card_unblock(*, card: Card, actor: Any = None, now: dt.datetime | None = None) -> Card:
    """Undo a block: a member's blocked card becomes active again; a blocked card without a
    member (blocked stock) becomes unassigned stock again. Unblocking an active or unassigned
    card changes nothing (no event). Refused (`CardStatusInvalid`) for a replaced card (its
    replacement is the member's card now) and a void card. Queries: 2-3."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock_card_by_id(card.pk)
        if locked.status in (Status.ACTIVE, Status.UNASSIGNED):
            return _sync(card, locked)
        if locked.status != Status.BLOCKED:
            raise errors.CardStatusInvalid(
                f"A card that is {locked.get_status_display().lower()} cannot be unblocked.",
                number=locked.number,
                status=locked.status,
            )
        if locked.replaced_by_id is not None:
            raise errors.CardStatusInvalid(
                "This card was replaced; its replacement is the member's card.",
                number=locked.number,
                status=locked.status,
                replaced_by=locked.replaced_by_id,
            )
        stock = locked.member_id is None
        locked.status = Status.UNASSIGNED if stock else Status.ACTIVE
        locked.blocked_at = None
        locked.save(update_fields=["status", "blocked_at"])
        _record_event(
            card=locked, kind=EventKind.UNBLOCKED, actor=actor, note="back to stock" if stock else "", when=now
        )
    return _sync(card, locked)


def card_replace(
    *, card: Card, actor: Any = None, now: dt.datetime | None = None, new_number: str | None = None
) -> Card:
    """Replace a lost or damaged card: the old card is blocked and points to its replacement,
    which is active for the same member. The balance lives on the member and is untouched.

    Without `new_number` the replacement is a new card of the same kind with a fresh number;
    with it, that unassigned stock card of the program (handed out at the till) becomes the
    replacement. The replacement inherits `claimed_at` (a claimed account stays claimed).
    Refusals: `CardStatusInvalid` (the card is stock, blocked or not, void, or already replaced),
    `InvalidCardNumber` / `CardNotFound` / `CardNotAssignable` for `new_number`."""
    now = now or timezone.now()
    stock_id = None
    if new_number is not None:
        stock_id = card_lookup(program=card.program, number=new_number).pk
    with transaction.atomic():
        # Both rows locked in id order (two replacements never deadlock).
        locked = {c.pk: c for c in lock_objects.cards_for_update([card.pk, *([stock_id] if stock_id else [])])}
        old = locked.get(card.pk)
        if old is None:
            raise errors.CardNotFound(f"No card {card.pk}.", card_id=card.pk)
        if old.replaced_by_id is not None:
            raise errors.CardStatusInvalid(
                "This card was already replaced.", number=old.number, status=old.status, replaced_by=old.replaced_by_id
            )
        if old.status not in (Status.ACTIVE, Status.BLOCKED) or old.member_id is None:
            state = old.get_status_display().lower() if old.member_id is not None else "stock (no member)"
            raise errors.CardStatusInvalid(
                f"A card that is {state} cannot be replaced.",
                number=old.number,
                status=old.status,
            )
        if stock_id is not None:
            new = locked[stock_id]
            if new.status != Status.UNASSIGNED:
                raise errors.CardNotAssignable(
                    f"The new card is {new.get_status_display().lower()}: only an unassigned card can be handed out.",
                    number=new.number,
                    status=new.status,
                )
            _assign(new, old.member, now)
            if old.claimed_at is not None:
                new.claimed_at = old.claimed_at
                new.save(update_fields=["claimed_at"])
        else:
            new = Card(
                program_id=old.program_id,
                member=old.member,
                kind=old.kind,
                status=Status.ACTIVE,
                created_at=now,
                assigned_at=now,
                claimed_at=old.claimed_at,
            )
            _insert_with_new_number(new, old.program)
        old.status = Status.BLOCKED
        old.blocked_at = old.blocked_at or now
        old.replaced_by = new
        old.save(update_fields=["status", "blocked_at", "replaced_by"])
        _record_event(card=old, kind=EventKind.REPLACED, actor=actor, note=f"by card {new.number}", when=now)
        _record_event(card=new, kind=EventKind.ASSIGNED, actor=actor, note=f"replaces card {old.number}", when=now)
    _sync(card, old)
    return new
