"""Writes of the portal's "Preferences" and "My data" pages (docs/portal.md). Each calls the
owning app's service: the email opt-outs are `notifications.emails`' (shared with the emailed
preferences link), the profile and the deletion request are `loyalty.services`'."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from loyalty import services as loyalty_services
from loyalty.models import DeletionRequest, Member
from notifications import emails
from notifications.models import EmailOptOut

VIA = "portal"


def preferences_save(*, member: Member, kinds: Iterable[str], email_consent: bool, language: str) -> Member:
    """The preferences form: the email kinds ticked (every other optional kind is switched off),
    the consent to marketing emails, and the language of emails. One transaction.
    Refusals: `loyalty.errors.InvalidInput` (an unknown language; an anonymised member)."""
    with transaction.atomic():
        emails.preferences_save(member_id=member.pk, wanted=kinds, via=VIA)
        loyalty_services.member_update(member=member, email_consent=email_consent, language=language)
    return member


def marketing_unsubscribe(*, member: Member) -> Member:
    """ "Unsubscribe from everything marketing": an opt-out of every marketing kind and the
    consent withdrawn. Account emails (points, coupons, sign-in links) keep coming."""
    with transaction.atomic():
        emails.opt_out(member_id=member.pk, kind=EmailOptOut.ALL_MARKETING, via=VIA)
        loyalty_services.member_update(member=member, email_consent=False)
    return member


def deletion_request(*, member: Member) -> DeletionRequest:
    """The member asks for their data to be erased; staff confirm it in the admin. Idempotent."""
    return loyalty_services.deletion_request_create(member=member, via=VIA)
