"""The program's admin page: "Download configuration" and "Upload configuration" (diff, then
confirm), permission "change program", the admin log."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from programfiles.export import dumps, export_document
from tests.loyalty.factories import StaffFactory
from tests.programfiles.builders import build_program
from workflows.models import EarningRule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _public_urls(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True


def upload(client, program, text, **extra):
    url = reverse("programfiles:upload", args=[program.pk])
    return client.post(url, {"file": SimpleUploadedFile("shop.yaml", text.encode()), **extra})


def test_the_program_page_offers_download_and_upload(client, staff):
    program = build_program()
    client.force_login(staff)
    page = client.get(reverse("admin:loyalty_program_change", args=[program.pk])).content.decode()
    assert "Download configuration" in page
    assert "Upload configuration" in page

    response = client.get(reverse("programfiles:download", args=[program.pk]))

    assert response["Content-Disposition"] == 'attachment; filename="shop.yaml"'
    assert response.content.decode() == dumps(export_document(program))


def test_upload_shows_the_diff_then_confirm_loads_it_and_logs_it(client, staff):
    program = build_program()
    document = export_document(program)
    rule = next(r for r in document["earning_rules"] if r["code"] == "double-weekend")
    rule["multiplier"] = 3
    text = dumps(document)
    client.force_login(staff)

    shown = upload(client, program, text).content.decode()

    assert "Nothing has been written yet." in shown
    assert "double-weekend.multiplier" in shown
    assert EarningRule.objects.get(program=program, code="double-weekend").multiplier == 2

    done = client.post(reverse("programfiles:upload", args=[program.pk]), {"text": text, "confirm": "1"})

    assert done.status_code == 302
    assert EarningRule.objects.get(program=program, code="double-weekend").multiplier == 3
    entry = LogEntry.objects.get(object_id=str(program.pk))
    assert "earning_rules.double-weekend.multiplier: 2 -> 3" in entry.change_message


def test_an_invalid_file_shows_the_problems_with_paths(client, staff):
    program = build_program()
    document = export_document(program)
    document["tiers"][0]["multiplier"] = "lots"
    client.force_login(staff)

    page = upload(client, program, dumps(document)).content.decode()

    assert "nothing was changed" in page
    assert "tiers[0].multiplier: must be a number" in page


def test_upload_needs_change_program(client):
    program = build_program()
    viewer = StaffFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_program"))
    client.force_login(viewer)

    assert client.get(reverse("programfiles:upload", args=[program.pk])).status_code == 403
    assert client.get(reverse("programfiles:download", args=[program.pk])).status_code == 403
