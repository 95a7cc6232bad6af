"""The admin's email pages: a program's overview, the template editor (save with the sandbox's
check, live preview for a sample or a real member, send me a test, reset to default), the email
settings and the program's branding."""

import html
import re

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse

from notifications import email_kinds, email_render
from notifications.models import EmailSettings, EmailTemplate
from tests.loyalty.factories import MemberFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client, staff):
    staff.email = "manager@shop.example"
    staff.save()
    client.force_login(staff)
    return client


def editor_url(program, kind="welcome", language="en"):
    return reverse("admin:notifications_emailtemplate_editor", args=[program.pk, kind, language])


def preview_url(program, kind="welcome", language="en"):
    return reverse("admin:notifications_emailtemplate_preview", args=[program.pk, kind, language])


def default_form(kind="welcome", language="en", **changes):
    parts = email_render.default_parts(kind, language)
    return {
        "subject": parts.subject,
        "html_body": parts.html_body,
        "text_body": parts.text_body,
        "preview_member": "",
        **changes,
    }


def srcdoc(content: str) -> str:
    """The email shown in the preview iframe, as the browser reads the attribute."""
    found = re.search(r'srcdoc="([^"]*)"', content)
    assert found, "no preview iframe"
    return html.unescape(found.group(1))


def test_the_overview_lists_every_kind_with_its_state(manager, program):
    EmailSettings.objects.create(program=program, enabled_kinds=["welcome"])
    EmailTemplate.objects.create(
        program=program, kind="welcome", language="fr", subject="Salut {{ member.first_name }}"
    )
    response = manager.get(reverse("admin:notifications_emailtemplate_overview", args=[program.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    for kind in ("welcome", "points_expiring", "points_reminder", "login_link", "reward_redeemed_admin"):
        assert f'id="kind-{kind}"' in content
    row = content[content.index('id="kind-points_earned"') :].split("</tr>")[0]
    assert "off" in row
    welcome = content[content.index('id="kind-welcome"') :].split("</tr>")[0]
    assert "customised" in welcome  # French
    assert editor_url(program, "welcome", "fr") in welcome


def test_the_editor_starts_from_the_shipped_default_with_a_preview_and_the_variables(manager, program):
    response = manager.get(editor_url(program, "reward_redeemed"))
    assert response.status_code == 200
    content = response.content.decode()
    default = email_render.default_parts("reward_redeemed", "en")
    assert html.escape(default.subject) in content
    assert "{{ coupon.valid_until|date }}" in content  # a variable of the kind, listed (dates with |date)
    assert "{{ member.first_name }}" in content
    email = srcdoc(content)
    assert "SAVE-7K2Q-9XPD" in email
    assert "Alex" in email  # the sample member


def test_a_template_with_an_unknown_variable_is_a_form_error_naming_it(manager, program):
    form = default_form(html_body="<p>Hi {{ member.nickname }}, you have {{ balance }}</p>")
    response = manager.post(editor_url(program), {**form, "_save": "1"})
    assert response.status_code == 200
    errors = response.context["form"].errors["html_body"]
    assert any("member.nickname" in e and "balance" in e for e in errors)
    assert "member.nickname" in response.content.decode()
    assert not EmailTemplate.objects.exists()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("<p>{% if member.first_name %}unclosed</p>", "Template error"),
        ('{% load static %}<img src="{% static "x.png" %}">', "static"),
        ("{% include 'admin/base.html' %}", "{% include %}"),
        ("{{ coupon.code }}", "Unknown variable"),  # welcome has no coupon
    ],
)
def test_syntax_errors_and_forbidden_tags_are_form_errors_never_a_500(manager, program, body, words):
    response = manager.post(editor_url(program), {**default_form(html_body=body), "_save": "1"})
    assert response.status_code == 200
    assert any(words in e for e in response.context["form"].errors["html_body"])
    assert not EmailTemplate.objects.exists()
    # The preview says the same instead of rendering.
    preview = manager.post(preview_url(program), default_form(html_body=body))
    assert preview.status_code == 200
    assert words in html.unescape(preview.content.decode())
    assert "srcdoc" not in preview.content.decode()


def test_saving_keeps_only_what_differs_from_the_default(manager, program, staff):
    form = default_form(subject="Bienvenue, {{ member.first_name }}!", language="en")
    response = manager.post(editor_url(program), {**form, "_save": "1"})
    assert response.status_code == 302
    row = EmailTemplate.objects.get(program=program, kind="welcome", language="en")
    assert row.subject == "Bienvenue, {{ member.first_name }}!"
    assert row.html_body == ""  # unchanged: follows the shipped default
    assert row.text_body == ""
    assert row.updated_by == staff
    # The editor shows the saved subject and the default bodies.
    content = manager.get(editor_url(program)).content.decode()
    assert "Bienvenue, {{ member.first_name }}!" in html.unescape(content)


def test_reset_to_default_removes_the_merchants_version(manager, program):
    EmailTemplate.objects.create(program=program, kind="welcome", language="en", subject="Old")
    response = manager.post(editor_url(program), {**default_form(subject="ignored"), "_reset": "1"})
    assert response.status_code == 302
    assert not EmailTemplate.objects.exists()


def test_the_preview_renders_the_unsaved_text_for_the_sample_member(manager, program):
    form = default_form(html_body="<p>Draft for {{ member.first_name }}: {{ signup_points }} to start</p>")
    response = manager.post(preview_url(program), form)
    assert response.status_code == 200
    email = srcdoc(response.content.decode())
    assert "Draft for Alex: 100 to start" in email
    assert program.brand_color.lower() in email.lower()
    assert "sample member" in response.content.decode()
    assert not EmailTemplate.objects.exists()  # previewing saves nothing


def test_the_preview_renders_for_a_real_member_chosen_by_id_or_email(manager, program, other_program):
    member = MemberFactory(program=program, first_name="Grace", email="grace@example.com")
    member.__class__.objects.filter(pk=member.pk).update(available=4321)
    form = default_form(html_body="<p>{{ member.first_name }} has {{ member.available }}</p>")
    for chosen in (str(member.pk), "GRACE@example.com"):
        content = manager.post(preview_url(program), {**form, "preview_member": chosen}).content.decode()
        assert "Grace has 4321" in srcdoc(content)
    # A member of another program is not found: the sample member is used, and the page says so.
    stranger = MemberFactory(program=other_program, first_name="Mallory")
    content = manager.post(preview_url(program), {**form, "preview_member": str(stranger.pk)}).content.decode()
    assert "Mallory" not in srcdoc(content)
    assert "No member" in html.unescape(content)


def test_a_hostile_member_name_is_escaped_in_the_preview(manager, program):
    member = MemberFactory(program=program, first_name='<script>alert("x")</script><img src=x onerror=alert(1)>')
    response = manager.post(preview_url(program), {**default_form(), "preview_member": str(member.pk)})
    content = response.content.decode()
    assert "<script>alert" not in content
    assert "<img src=x" not in content
    email = srcdoc(content)
    assert "<script>" not in email
    assert "&lt;script&gt;alert" in email
    assert re.search(r"<iframe[^>]*\bsandbox\b", content)


def test_send_me_a_test_sends_one_email_to_the_staff_address_marked_test(manager, program):
    member = MemberFactory(program=program, first_name="Grace")
    form = default_form(subject="Hello {{ member.first_name }} (draft)", preview_member=str(member.pk))
    response = manager.post(editor_url(program), {**form, "_test": "1"})
    assert response.status_code == 200
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["manager@shop.example"]
    assert sent.subject == "[TEST] Hello Grace (draft)"
    assert "List-Unsubscribe" not in sent.extra_headers  # staff must not unsubscribe the member
    assert "Grace" in sent.alternatives[0][0]
    assert not EmailTemplate.objects.exists()  # a test does not save
    assert "Test sent to manager@shop.example" in response.content.decode()


def test_send_me_a_test_without_a_staff_address_says_so(client, program):
    user = StaffFactory(is_superuser=True, email="")
    client.force_login(user)
    response = client.post(editor_url(program), {**default_form(), "_test": "1"})
    assert response.status_code == 200
    assert mail.outbox == []
    assert "no email address" in response.content.decode()


def test_a_bad_template_sends_no_test(manager, program):
    response = manager.post(editor_url(program), {**default_form(subject="{{ nope }}"), "_test": "1"})
    assert response.status_code == 200
    assert mail.outbox == []
    assert response.context["form"].errors["subject"]


def test_a_disabled_kind_says_so_in_the_editor_and_still_previews(manager, program):
    EmailSettings.objects.create(program=program, enabled_kinds=["welcome"])
    content = manager.get(editor_url(program, "points_expiring")).content.decode()
    assert 'id="kind-off"' in content
    assert "switched off" in content
    assert "SAVE" not in content  # the expiry email, not another kind's
    assert "points" in srcdoc(content)
    assert 'id="kind-off"' not in manager.get(editor_url(program, "welcome")).content.decode()


def test_the_french_editor_starts_from_the_french_default(manager, program):
    content = manager.get(editor_url(program, "points_expiring", "fr")).content.decode()
    assert "expirent" in html.unescape(content)
    assert "Se désabonner" in srcdoc(content)


def test_a_french_member_is_sent_the_french_default(program):
    from notifications import email_samples, emails

    member = MemberFactory(program=program, language="fr", first_name="Élodie")
    rendered = emails.message_render(
        program=program, member=member, kind="welcome", data=email_samples.sample_data("welcome", language="fr")
    )
    assert rendered.subject.startswith("Bienvenue chez")
    assert "Élodie" in rendered.html


def test_unknown_kinds_and_languages_are_not_found(manager, program):
    assert manager.get(editor_url(program, "nope")).status_code == 404
    assert manager.get(editor_url(program, "welcome", "de")).status_code == 404


def test_staff_without_the_template_permission_cannot_edit_preview_or_test(client, program):
    user = StaffFactory(email="support@shop.example")
    user.user_permissions.add(Permission.objects.get(codename="view_emailtemplate"))
    client.force_login(user)
    assert client.get(reverse("admin:notifications_emailtemplate_overview", args=[program.pk])).status_code == 200
    assert client.get(editor_url(program)).status_code == 403
    assert client.post(preview_url(program), default_form()).status_code == 403
    assert client.post(editor_url(program), {**default_form(), "_test": "1"}).status_code == 403
    assert mail.outbox == []
    other = StaffFactory()
    client.force_login(other)
    assert client.get(reverse("admin:notifications_emailtemplate_overview", args=[program.pk])).status_code == 403


def test_the_email_settings_page_switches_kinds_and_keeps_the_login_link_on(manager, program):
    response = manager.post(
        reverse("admin:notifications_emailsettings_add"),
        {
            "program": program.pk,
            "enabled_kinds": ["welcome", "points_expiring"],
            "from_name": "Maison",
            "from_email": "club@maison.example",
            "reply_to": "",
            "admin_email": "owner@maison.example",
            "postal_address": "1 rue de la Paix\n75002 Paris",
            "expiry_warning_days": "21",
            "reminder_frequency": "quarterly",
            "tier_at_risk_days": "10",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = EmailSettings.objects.get(program=program)
    assert set(row.enabled_kinds) == {"welcome", "points_expiring"} | email_kinds.ALWAYS_ON
    assert row.expiry_warning_days == 21
    assert row.reminder_frequency == "quarterly"
    # The settings page lists each kind with its description and whether it is marketing.
    content = manager.get(reverse("admin:notifications_emailsettings_change", args=[row.pk])).content.decode()
    assert "marketing: only members who consented" in content
    assert "Points statement (periodic)" in content


def test_the_program_admin_edits_the_branding(manager, program):
    url = reverse("admin:loyalty_program_change", args=[program.pk])
    content = manager.get(url).content.decode()
    assert 'name="brand_color"' in content
    assert 'type="color"' in content
    assert 'name="logo_url"' in content
    assert 'name="language"' in content
