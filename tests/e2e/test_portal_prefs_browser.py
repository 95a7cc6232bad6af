"""The portal's "Preferences" and "My data" pages in a real browser (Playwright driving
Debian's Chromium) on a phone (390x844) and a desktop (1440x900): a member turns an email kind
off and changes the language, downloads their data as JSON and as CSV, and asks for deletion.
On every page: axe-core finds no serious or critical violation and the Content-Security-Policy
blocks nothing.

Screenshots go to $PORTAL_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from loyalty import services as ledger
from loyalty.models import DeletionRequest, Member
from notifications.models import EmailOptOut
from portal import services
from tests.e2e.test_portal_browser import CHROMIUM, VIEWPORTS, browser, check_page, shots  # noqa: F401
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.portal.conftest import link_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_member_sets_preferences_downloads_their_data_and_asks_for_deletion(
    browser,  # noqa: F811
    live_server,
    shots,  # noqa: F811
    viewport,
):
    program = ProgramFactory(name="Corner Bakery", points_name="crumbs", brand_color="#B5179E")
    member = MemberFactory(program=program, first_name="Léa", email="lea@example.com", email_consent=True)
    ledger.points_adjust(program=program, member_id=member.pk, points=120, reason="welcome", source="e2e")
    services.login_link_send(program=program, email=member.email)
    context = browser.new_context(
        viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris", accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    base = f"{live_server.url}/p/{program.slug}"

    page.goto(f"{live_server.url}{link_of(member)}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")

    # Preferences: from the menu; turn "Points statement" off and switch the language to French.
    page.get_by_role("link", name="Preferences").click()
    page.wait_for_url(f"{base}/preferences")
    assert page.get_by_label("Points statement").is_checked()
    check_page(page, f"{viewport}-prefs-1-preferences", shots, problems)
    page.get_by_label("Points statement").uncheck()
    page.get_by_label("Language of our emails and pages").select_option("fr")
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_url(f"{base}/preferences")
    assert page.get_by_role("heading", name="Préférences", exact=True).is_visible()
    assert page.get_by_text("Vos choix sont enregistrés.").is_visible()
    assert not page.get_by_label("Relevé de points").is_checked()
    check_page(page, f"{viewport}-prefs-2-preferences-saved", shots, problems)
    member.refresh_from_db()
    assert member.language == "fr"
    assert EmailOptOut.objects.filter(member=member, kind="points_reminder").exists()

    # My data: both downloads hold the member's data.
    page.get_by_role("link", name="Mes données").click()
    page.wait_for_url(f"{base}/my-data")
    check_page(page, f"{viewport}-prefs-3-my-data", shots, problems)
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger en JSON").click()
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert data["profile"][0]["email"] == "lea@example.com"
    assert data["ledger"][0]["points"] == 120
    assert {row["kind"] for row in data["email_opt_outs"]} == {"points_reminder"}
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger en CSV (zip)").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert "ledger.csv" in archive.namelist()
    assert "Léa" in archive.read("profile.csv").decode("utf-8-sig")

    # Ask for deletion: the page then says it is waiting for the team.
    page.get_by_role("button", name="Demander la suppression de mes données").click()
    page.wait_for_url(f"{base}/my-data")
    assert page.get_by_text("Notre équipe traitera votre demande").is_visible()
    check_page(page, f"{viewport}-prefs-4-deletion-asked", shots, problems)
    assert DeletionRequest.objects.filter(member=member, status="open").count() == 1
    assert Member.objects.get(pk=member.pk).anonymised_at is None  # staff confirm first
    context.close()
