"""Writes of the customer portal: sending a login link, using one, joining a program.

Login links are django-sesame tokens of the member's login user (`Member.user`, created here on
demand, no usable password, never staff), scoped to the program (`link_scope`), expiring after
`PORTAL_LOGIN_LINK_MINUTES` and one-time (`SESAME_ONE_TIME`: logging in stamps the user's
`last_login`, which the token signs). docs/decisions.md says why a user rather than a token on
the member; docs/portal.md how it all fits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.functions import Lower
from django.urls import reverse
from sesame.utils import get_token, get_user

from loyalty import errors
from loyalty.lock_objects import member_for_update
from loyalty.models import Member, Program
from notifications import emails
from workflows import services as workflow_services

# A link older than its lifetime but younger than this is reported as expired (rather than as
# unknown or used) on the page it opens.
EXPIRED_LINK_MEMORY = dt.timedelta(days=30)


def link_scope(program_id: int) -> str:
    """The sesame scope of a program's login links: a link of program A opens nothing on B."""
    return f"portal:{program_id}"


def _absolute(path: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def _login_user(member: Member) -> object:
    """The member's login user, created (and linked) on first use. The caller holds the
    member's row lock, so two requests cannot create two users."""
    user_model = get_user_model()
    if member.user_id is not None:
        return user_model._default_manager.get(pk=member.user_id)
    # "~" is refused by the staff user form's username validator: no staff name can clash.
    user = user_model(username=f"~member-{member.pk}", is_active=True, is_staff=False)
    user.set_unusable_password()
    user.save()
    Member.objects.filter(pk=member.pk).update(user=user)
    member.user = user
    return user


def member_by_email(*, program: Program, email: str) -> Member | None:
    """The program's member with `email` (case-insensitive), if any. 1 query (member_unique_email)."""
    email = (email or "").strip().lower()
    if not email:
        return None
    return (
        Member.objects.alias(email_lower=Lower("email"))
        .filter(program=program, email_lower=email)
        .exclude(email="")
        .first()
    )


def login_link_send(*, program: Program, email: str, now: dt.datetime | None = None) -> int | None:
    """If a member of `program` has `email`, queue a `login_link` email with a new one-time link
    (through the outbox, sent after commit); else do nothing. Returns the message id or None;
    the caller tells the visitor the same thing either way (no account enumeration)."""
    found = member_by_email(program=program, email=email)
    if found is None:
        return None
    with transaction.atomic(durable=True):
        member = member_for_update(member_id=found.pk).get()
        user = _login_user(member)
        token = get_token(user, scope=link_scope(program.pk))
        url = _absolute(reverse("portal:login_link", args=[program.slug])) + "?" + urlencode({"sesame": token})
        return emails.login_link_queue(
            member=member, url=url, valid_minutes=settings.PORTAL_LOGIN_LINK_MINUTES, now=now
        )


@dataclass(frozen=True)
class LinkCheck:
    """What a login link is worth: `valid` (with its member), `expired`, or `invalid` (used,
    superseded by a later login, damaged, or of another program)."""

    state: str
    member: Member | None = None

    @property
    def valid(self) -> bool:
        return self.state == "valid"


def _member_of(user: object, program: Program) -> Member | None:
    member = Member.objects.filter(user=user, program=program).first()
    return member


def login_link_read(*, program: Program, token: str) -> LinkCheck:
    """Check a link without using it (mail scanners open links: only the page's button logs in).
    Queries: 2-4, no write."""
    scope = link_scope(program.pk)
    user = get_user(token, scope=scope, update_last_login=False)
    if user is None:
        old = get_user(token, scope=scope, max_age=EXPIRED_LINK_MEMORY, update_last_login=False)
        return LinkCheck("expired" if old is not None else "invalid")
    member = _member_of(user, program)
    return LinkCheck("valid", member) if member is not None else LinkCheck("invalid")


def login_link_use(*, program: Program, token: str) -> LinkCheck:
    """Use a login link once: valid, it stamps the user's `last_login` (which invalidates this
    and every earlier link of the member) and returns the member; the caller then logs the
    member in to the program's session. Two concurrent uses of one link: the user's row lock
    makes the second see the first's stamp, so it is refused."""
    check = login_link_read(program=program, token=token)
    if not check.valid or check.member is None:
        return check
    with transaction.atomic(durable=True):
        get_user_model()._default_manager.select_for_update().filter(pk=check.member.user_id).first()
        user = get_user(token, scope=link_scope(program.pk), update_last_login=True)
        if user is None:
            return LinkCheck("invalid")
    return check


def member_join(
    *,
    program: Program,
    email: str,
    first_name: str,
    last_name: str,
    birthday: dt.date | None,
    email_consent: bool,
    language: str,
    referral_code: str = "",
    now: dt.datetime | None = None,
) -> Member:
    """Self-service enrolment from the portal's join page: the same enrolment as the API's
    `POST /members` (`workflows.services.member_enrol_with_card`: a digital card, then on commit
    the referral, the signup bonus, automations and the welcome email), then a login link to
    the new member's address: the address is proved before anyone sees the account.
    Refusals (nothing written): `DuplicateEmail`, `InvalidInput` (an unknown referral code)."""
    referrer = None
    code = (referral_code or "").strip().upper()
    if code:
        referrer = Member.objects.filter(program=program, referral_code=code).first()
        if referrer is None:
            raise errors.InvalidInput("No member of this program has this referral code.", field="referral_code")
    member, _created = workflow_services.member_enrol_with_card(
        program=program,
        email=email,
        first_name=first_name,
        last_name=last_name,
        birthday=birthday,
        email_consent=email_consent,
        referred_by=referrer,
        channel=Member.Channel.ONLINE,
        language=language,
        now=now,
    )
    login_link_send(program=program, email=member.email, now=now)
    return member
