"""The brand colour's rules (loyalty/branding.py) and the program admin's preview of them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from loyalty import branding
from tests.loyalty.factories import ProgramFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("color", "warns", "notes"),
    [("#6F4E37", False, False), ("#1F6FEB", False, False), ("#808080", True, True), ("#FFE600", False, True)],
)
def test_a_colour_is_warned_about_only_when_text_on_it_is_hard_to_read(color, warns, notes):
    assert bool(branding.button_warning(color)) is warns
    assert bool(branding.light_colour_note(color)) is notes
    colors = branding.brand_colors(color)
    if not warns:
        assert branding.contrast(colors["color"], colors["on_color"]) >= 4.5


def test_the_program_page_previews_the_portal_in_the_saved_colour(client, staff):
    program = ProgramFactory(name="Grey Club", brand_color="#808080", points_name="beans")
    client.force_login(staff)
    page = client.get(reverse("admin:loyalty_program_change", args=[program.pk])).content.decode()
    assert "data-brand-preview" in page
    assert "--bp-brand:#808080" in page
    assert "Hard to read: text on this colour reaches 3.99:1" in page
    assert "loyalty/brand_preview.js" in page  # a static script, no inline one
    assert "Redeem a reward" in page
    # The add page previews the defaults.
    assert "data-brand-preview" in client.get(reverse("admin:loyalty_program_add")).content.decode()
