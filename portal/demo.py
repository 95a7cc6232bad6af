"""The portal part of `manage.py load_demo`: where the demo program's customer portal is and a
demo member to log in as (the login link arrives by email: the console backend prints it, in
`make run` in the worker's log, .data/logs/worker.log)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

from loyalty import services as ledger
from loyalty.models import WIDGET_ORIGIN, DeletionRequest, Member, Program
from loyalty.services import program_widget_secret_rotate


def demo_member(*, program: Program) -> Member | None:
    """An active demo member with an address and some history, for the portal's demo."""
    return (
        Member.objects.filter(program=program, status=Member.Status.ACTIVE, lifetime_earned__gt=0)
        .exclude(email="")
        .order_by("id")
        .first()
    )


def demo_portal_line(*, program: Program) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    login = base + reverse("portal:login", args=[program.slug])
    member = demo_member(program=program)
    who = f"; log in as {member.email} (the login link is printed by the console email backend)" if member else ""
    return f"Customer portal: {login}{who}; join at {base}{reverse('portal:join', args=[program.slug])}"


def demo_deletion_requests(*, program: Program, actor: object) -> str:
    """Two requests to delete one's data in the admin's queue (Loyalty > Deletion requests):
    one waiting for staff, one declined with the reason the member was emailed. Once."""
    if DeletionRequest.objects.filter(program=program).exists():
        return ""
    login_member = demo_member(program=program)
    members = list(
        Member.objects.filter(program=program, status=Member.Status.ACTIVE)
        .exclude(email="")
        .exclude(pk=getattr(login_member, "pk", None))
        .order_by("-id")[:2]
    )
    if len(members) < 2:
        return ""
    ledger.deletion_request_create(member=members[0])
    declined = ledger.deletion_request_create(member=members[1])
    ledger.deletion_request_decide(
        request=declined,
        confirm=False,
        actor=actor,
        note="Your order of last week is still being delivered: we can delete your data once it has arrived.",
    )
    return "Deletion requests: 1 waiting for staff, 1 declined (Loyalty > Deletion requests)"


def demo_widget_member(*, program: Program) -> Member | None:
    """The demo member the shop widget's demo shows (one with a shop customer id)."""
    return (
        Member.objects.filter(program=program, status=Member.Status.ACTIVE, available__gt=0, external_id__isnull=False)
        .order_by("id")
        .first()
    )


def demo_widget_setup(*, program: Program) -> str:
    """Turn the demo program's shop widget on (a secret, and this site's own origin allowed to
    frame it, for the demo shop page) unless it is set up already; say how to try it."""
    if not program.widget_secret:
        program_widget_secret_rotate(program=program)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    if not program.widget_origins and WIDGET_ORIGIN.fullmatch(origin):
        Program.objects.filter(pk=program.pk).update(widget_origins=origin)
    member = demo_widget_member(program=program)
    who = f" {member.external_id}" if member is not None and member.external_id else " <customer id>"
    return (
        f"Shop widget: a demo shop page at {base}{reverse('portal:widget_demo', args=[program.slug])} "
        f"(DEBUG only); a token and the snippet: manage.py widget_token {program.slug}{who}"
    )
