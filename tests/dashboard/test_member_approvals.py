"""Adjustment requests: approved by a second staff user (posted once, even when two approvers
click at once), never by their requester, rejected with a reason; both audited. And the same
guardrails on the admin's adjustment form."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from loyalty import errors, services
from loyalty.models import AdjustmentRequest, LedgerEntry, Program, StaffAction

from .member_helpers import form_token, role_user

pytestmark = pytest.mark.django_db


def ask(member, requester, points=800, reason="Lost parcel", key="k-1"):
    outcome = services.staff_adjust(
        actor=requester, member=member, points=points, reason=reason, idempotency_key=key, confirmed=True
    )
    assert outcome.status == "requested"
    return outcome.request


def approve_url(req):
    return reverse("dashboard:adjustment_approve", args=[req.pk])


def reject_url(req):
    return reverse("dashboard:adjustment_reject", args=[req.pk])


def test_a_second_user_approves_and_it_is_posted_once(client, member):
    support, manager = role_user("Support"), role_user("Manager")
    req = ask(member, support)
    client.force_login(manager)

    first = client.post(approve_url(req))
    second = client.post(approve_url(req))

    assert first.status_code == second.status_code == 302
    member.refresh_from_db()
    assert member.available == 800
    entry = LedgerEntry.objects.get(member=member)
    assert (entry.points, entry.reason, entry.created_by) == (800, "Lost parcel", support)
    req.refresh_from_db()
    assert (req.status, req.decided_by, req.entry) == ("approved", manager, entry)
    assert list(StaffAction.objects.filter(member=member).order_by("id").values_list("action", "actor")) == [
        ("adjust_requested", support.pk),
        ("adjust_approved", manager.pk),
    ]


def test_the_requester_cannot_approve_their_own_request(client, member):
    manager = role_user("Manager")
    req = ask(member, manager, points=20_000)  # above the program's approval threshold
    client.force_login(manager)

    response = client.post(approve_url(req))

    assert response.status_code == 302
    req.refresh_from_db()
    assert req.status == "pending"
    assert not LedgerEntry.objects.filter(member=member).exists()
    with pytest.raises(errors.SelfApproval):
        services.adjustment_request_approve(request_id=req.pk, approver=manager, program_ids=[member.program_id])
    with pytest.raises(errors.SelfApproval):
        services.adjustment_request_reject(
            request_id=req.pk, approver=manager, reason="no", program_ids=[member.program_id]
        )


def test_a_user_without_the_permission_cannot_approve(client, member):
    req = ask(member, role_user("Support"))
    client.force_login(role_user("Support"))

    assert client.post(approve_url(req)).status_code == 403
    req.refresh_from_db()
    assert req.status == "pending"


def test_another_programs_request_is_not_found(client, member, monkeypatch, other_program):
    import dashboard.views_member as views

    req = ask(member, role_user("Support"))
    monkeypatch.setattr(views, "programs_for", lambda user: Program.objects.filter(pk=other_program.pk))
    client.force_login(role_user("Manager"))

    assert client.post(approve_url(req)).status_code == 404
    assert client.get(reverse("dashboard:adjustment_requests")).context["pending"] == []


def test_a_rejection_records_its_reason_and_posts_nothing(client, member):
    support, manager = role_user("Support"), role_user("Manager")
    req = ask(member, support)
    client.force_login(manager)

    assert client.post(reject_url(req), {"reason": " "}).status_code == 302  # refused: no reason
    req.refresh_from_db()
    assert req.status == "pending"
    client.post(reject_url(req), {"reason": "No proof of the lost parcel"})

    req.refresh_from_db()
    assert (req.status, req.decision_reason, req.decided_by) == ("rejected", "No proof of the lost parcel", manager)
    assert not LedgerEntry.objects.filter(member=member).exists()
    assert StaffAction.objects.filter(member=member).order_by("id").last().action == "adjust_rejected"
    # A rejected request is never approved afterwards.
    with pytest.raises(errors.AlreadyDecided):
        services.adjustment_request_approve(request_id=req.pk, approver=manager, program_ids=[member.program_id])


def test_the_approvals_page_lists_the_pending_requests(client, member):
    support = role_user("Support")
    req = ask(member, support)
    client.force_login(role_user("Manager"))

    html = client.get(reverse("dashboard:adjustment_requests")).content.decode()

    assert f"request-{req.pk}" in html
    assert "Approve and post" in html
    admin_list = client.get(reverse("admin:loyalty_adjustmentrequest_changelist") + "?status__exact=pending")
    assert admin_list.status_code == 200
    assert "Lost parcel" in admin_list.content.decode()


def test_the_same_request_form_sent_twice_asks_once(member):
    support = role_user("Support")
    ask(member, support, key="same")
    again = services.staff_adjust(
        actor=support, member=member, points=800, reason="Lost parcel", idempotency_key="same", confirmed=True
    )
    assert again.replayed
    assert AdjustmentRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_post_it_once(member):
    support, first, second = role_user("Support"), role_user("Manager"), role_user("Owner")
    req = ask(member, support, points=900)
    barrier = threading.Barrier(2)
    outcomes, failures = [], []

    def approve(user):
        try:
            barrier.wait(timeout=30)
            outcomes.append(
                services.adjustment_request_approve(request_id=req.pk, approver=user, program_ids=[member.program_id])
            )
        except Exception as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert sorted(o.already for o in outcomes) == [False, True]
    assert LedgerEntry.objects.filter(member=member).count() == 1
    member.refresh_from_db()
    assert member.available == 900
    assert StaffAction.objects.filter(member=member, action="adjust_approved").count() == 1


# --- the admin's adjustment form has the same guardrails ---------------------------------------


def admin_adjust(client, member, points, **extra):
    url = reverse("admin:loyalty_member_adjust_points", args=[member.pk])
    token = form_token(client.get(url).content.decode())
    return client.post(url, {"points": str(points), "reason": "Typo?", "idempotency_key": token, **extra})


def test_the_admin_form_asks_before_the_minus_ten_thousand_typo(client, member):
    client.force_login(role_user("Owner"))

    response = admin_adjust(client, member, -10_000)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Please confirm this adjustment" in html
    assert "10000 points owed" in html
    assert not LedgerEntry.objects.filter(member=member).exists()
    confirmed = admin_adjust(client, member, -10_000, confirm_points="-10000")
    assert confirmed.status_code == 302
    assert StaffAction.objects.get(member=member).action == "adjust"


def test_the_admin_form_sends_a_support_users_big_adjustment_for_approval(client, member):
    client.force_login(role_user("Support"))

    response = admin_adjust(client, member, 800, confirm_points="800")

    assert response.status_code == 302
    assert not LedgerEntry.objects.filter(member=member).exists()
    assert AdjustmentRequest.objects.get(member=member).status == "pending"


def test_limits_by_role(program):
    owner, manager, support = role_user("Owner"), role_user("Manager"), role_user("Support")
    program.manager_adjustment_limit, program.support_adjustment_limit = 5000, 50
    assert services.adjustment_limit(owner, program) is None
    assert services.adjustment_limit(manager, program) == 5000
    assert services.adjustment_limit(support, program) == 50


def test_a_manager_above_the_manager_limit_asks_for_approval(member):
    member.program.adjustment_approval_above = None
    member.program.manager_adjustment_limit = 2000
    check = services.adjustment_check(user=role_user("Manager"), member=member, points=2500)
    assert check.needs_approval
    assert "your limit of 2,000" in check.approval_reason
