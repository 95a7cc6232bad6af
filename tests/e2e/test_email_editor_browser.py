"""The email template editor in a real browser (Playwright + /usr/bin/chromium): a manager opens
the redemption email, types into the body and sees the preview follow, narrows the preview to a
phone's width, then saves a template naming a variable the email does not have and reads the
error. Screenshots are left in the test's tmp_path."""

from __future__ import annotations

import pytest
from django.urls import reverse

from notifications.models import EmailTemplate
from tests.e2e.test_admin_browser import CHROMIUM, browser_page  # noqa: F401  (the logged-in page fixture)
from tests.loyalty.factories import ProgramFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not __import__("shutil").which(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_the_editor_previews_as_you_type_and_refuses_an_unknown_variable(browser_page, live_server):  # noqa: F811
    program = ProgramFactory(name="Maison Lumière", brand_color="#B3261E")
    page = browser_page
    url = reverse("admin:notifications_emailtemplate_editor", args=[program.pk, "reward_redeemed", "en"])
    page.goto(f"{live_server.url}{url}")
    preview = page.frame_locator("iframe.preview-frame")
    preview.get_by_text("SAVE-7K2Q-9XPD").wait_for()
    page.screenshot(path=str(page.screenshots / "editor-desktop.png"), full_page=True)

    body = page.locator("#id_html_body")
    body.click()
    page.keyboard.press("Control+Home")
    body.press_sequentially("<p>Hello again {{ member.first_name }}, thanks for shopping!</p>")
    preview.get_by_text("Hello again Alex, thanks for shopping!").wait_for()

    page.get_by_role("button", name="Phone").click()
    page.screenshot(path=str(page.screenshots / "editor-phone.png"), full_page=True)
    frame_box = page.locator("iframe.preview-frame").bounding_box()
    assert frame_box is not None
    assert frame_box["width"] <= 380

    body.press_sequentially("<p>Size {{ member.shoe_size }}</p>")
    page.locator(".preview-problems").wait_for()  # the preview says what is wrong
    page.click("input[name=_save]")
    page.wait_for_selector(".field-html_body .errorlist")
    page.screenshot(path=str(page.screenshots / "editor-error.png"), full_page=True)
    assert "member.shoe_size" in page.locator(".field-html_body .errorlist").inner_text()
    assert not EmailTemplate.objects.filter(program=program).exists()

    overview = reverse("admin:notifications_emailtemplate_overview", args=[program.pk])
    page.goto(f"{live_server.url}{overview}")
    page.screenshot(path=str(page.screenshots / "overview.png"), full_page=True)
    assert page.locator("#kind-reward_redeemed").is_visible()


def test_the_email_settings_and_branding_pages_show_their_fields(browser_page, live_server):  # noqa: F811
    program = ProgramFactory(name="Maison Lumière", brand_color="#B3261E")
    page = browser_page
    page.goto(f"{live_server.url}{reverse('admin:notifications_emailsettings_add')}?program={program.pk}")
    page.get_by_text("Points statement (periodic)").first.wait_for()
    page.screenshot(path=str(page.screenshots / "settings.png"), full_page=True)
    page.check("input[name=enabled_kinds][value=reward_redeemed_admin]")
    page.fill("#id_admin_email", "owner@maison.example")
    page.click("input[name=_save]")
    page.wait_for_selector("#kind-reward_redeemed_admin")  # back on the overview
    assert "on" in page.locator("#kind-reward_redeemed_admin").inner_text()

    page.goto(f"{live_server.url}{reverse('admin:loyalty_program_change', args=[program.pk])}")
    page.locator("#id_brand_color").wait_for()
    page.screenshot(path=str(page.screenshots / "program.png"), full_page=True)
    assert page.locator("#id_brand_color").input_value() == "#b3261e"
