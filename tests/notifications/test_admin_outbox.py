"""The outbox admin (notifications/admin_outbox.py): list, filters and search without full
counts, the read-only page with the rendered message, "Resend", the suppressions, and a
member's emails on the member's page."""

from urllib.parse import quote

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from notifications.models import EmailMessage, EmailSuppression
from tests.loyalty.factories import MemberFactory

CHANGELIST = "admin:notifications_emailmessage_changelist"


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def message(program, member, *, kind="welcome", status="sent", source="enrolled", **fields):
    now = timezone.now()
    return EmailMessage.objects.create(
        program=program,
        member=member,
        kind=kind,
        source=source,
        status=status,
        next_attempt_at=now if status == "queued" else None,
        to_email=member.email if member else "admin@example.com",
        subject="Welcome",
        created_at=now,
        sent_at=now if status != "queued" else None,
        **fields,
    )


def listed(response):
    return [row.pk for row in response.context["cl"].result_list]


def test_the_outbox_pages_open_with_every_filter(staff_client, program, member):
    sent = message(program, member)
    changelist = reverse(CHANGELIST)
    for query in (
        "",
        "?status__exact=bounced",
        "?kind__exact=welcome",
        f"?program__id__exact={program.pk}",
        "?created_at__gte=" + quote(timezone.now().replace(hour=0, minute=0).isoformat()),
        f"?member__id__exact={member.pk}",
        "?q=%23" + str(sent.pk),
    ):
        assert staff_client.get(changelist + query).status_code == 200, query
    assert staff_client.get(reverse("admin:notifications_emailmessage_change", args=[sent.pk])).status_code == 200


def test_filters_select_the_right_messages(staff_client, program, member, other_member):
    bounced = message(program, member, status="bounced")
    welcome = message(program, other_member)
    points = message(program, other_member, kind="points_earned", source="activity:1")
    changelist = reverse(CHANGELIST)
    assert listed(staff_client.get(changelist + "?status__exact=bounced")) == [bounced.pk]
    assert listed(staff_client.get(changelist + "?kind__exact=points_earned")) == [points.pk]
    assert listed(staff_client.get(changelist + f"?member__id__exact={other_member.pk}")) == [points.pk, welcome.pk]


def test_search_by_member_email_member_id_and_message_id(staff_client, program, member, other_member):
    mine = message(program, member)
    message(program, other_member)
    staff_copy = message(program, None, kind="reward_redeemed_admin", source="redemption:1")
    changelist = reverse(CHANGELIST)
    assert listed(staff_client.get(changelist, {"q": member.email.upper()})) == [mine.pk]
    assert listed(staff_client.get(changelist, {"q": str(member.pk)})) == [mine.pk]
    assert listed(staff_client.get(changelist, {"q": f"#{mine.pk}"})) == [mine.pk]
    assert listed(staff_client.get(changelist, {"q": "admin@example.com"})) == [staff_copy.pk]
    assert listed(staff_client.get(changelist, {"q": "nobody here"})) == []


def test_the_list_never_counts_the_whole_table(staff_client, program, member, django_assert_max_num_queries):
    for i in range(3):
        message(program, member, source=f"s{i}")
    response = staff_client.get(reverse(CHANGELIST) + "?status__exact=sent")
    assert response.context["cl"].show_full_result_count is False
    assert response.context["cl"].paginator.__class__.__name__ == "CappedCountPaginator"


def test_the_message_page_is_read_only_and_shows_the_rendered_message_and_data(staff_client, program, member):
    sent = message(program, member, data={"note": "<b>bold</b>"})
    page = staff_client.get(reverse("admin:notifications_emailmessage_change", args=[sent.pk])).content.decode()
    assert "Message (rendered now)" in page
    assert "<iframe sandbox" in page
    assert program.name in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page  # the data, escaped
    assert 'name="_save"' not in page  # read-only
    assert staff_client.post(reverse("admin:notifications_emailmessage_change", args=[sent.pk]), {}).status_code == 403


def test_resend_sends_the_selected_messages_again(staff_client, program, member, django_capture_on_commit_callbacks):
    bounced = message(program, member, status="bounced")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse(CHANGELIST), {"action": "resend", "_selected_action": [bounced.pk]}, follow=True
        )
    assert "1 message queued to be sent again." in response.content.decode()
    bounced.refresh_from_db()
    assert bounced.status == "sent"
    assert bounced.attempts == 1
    assert [m.extra_headers["X-Loyalty-Message"] for m in mail.outbox] == [str(bounced.pk)]


def test_resend_needs_the_change_permission(client, program, member):
    from django.contrib.auth.models import Permission

    from tests.loyalty.factories import StaffFactory

    viewer = StaffFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_emailmessage"))
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert 'value="resend"' not in response.content.decode()


def test_a_member_page_shows_their_latest_emails_and_links_to_all(staff_client, program, member):
    for i in range(12):
        message(program, member, kind="points_earned", source=f"activity:{i}")
    page = staff_client.get(reverse("admin:loyalty_member_change", args=[member.pk])).content.decode()
    assert "Latest emails" in page
    assert page.count("/admin/notifications/emailmessage/") >= 10
    link = reverse("admin:notifications_emailmessage_member", args=[member.pk])
    assert link in page
    response = staff_client.get(link)
    assert response.status_code == 302
    assert response["Location"].endswith(f"?member__id__exact={member.pk}")


def test_the_member_page_saves_without_any_data_of_the_emails_inline(staff_client, program, member):
    message(program, member)
    url = reverse("admin:loyalty_member_change", args=[member.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in ("external_id", "email", "first_name", "last_name")}
    data.update(
        {
            "first_name": "Renamed",
            "birthday": "",
            "email_consent": "",
            "referred_by": "",
            "user": "",
        }
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    member.refresh_from_db()
    assert member.first_name == "Renamed"


def test_staff_add_and_lift_a_suppression(staff_client, program, django_capture_on_commit_callbacks):
    response = staff_client.post(
        reverse("admin:notifications_emailsuppression_add"),
        {"email": "Typo@Example.com", "reason": "staff", "detail": "asked by phone"},
    )
    assert response.status_code == 302
    row = EmailSuppression.objects.get()
    assert (row.email, row.reason) == ("typo@example.com", "staff")
    changelist = reverse("admin:notifications_emailsuppression_changelist")
    assert staff_client.get(changelist, {"q": "typo@example.com"}).status_code == 200
    assert staff_client.get(reverse("admin:notifications_emailsuppression_change", args=[row.pk])).status_code == 200

    member = MemberFactory(program=program, email="typo@example.com")
    suppressed = message(program, member, status="queued")
    from notifications import emails

    assert emails.message_send(message_id=suppressed.pk).status == "suppressed"

    response = staff_client.post(reverse("admin:notifications_emailsuppression_delete", args=[row.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not EmailSuppression.objects.exists()
