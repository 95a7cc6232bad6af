"""The shipped email defaults: every kind in every language passes the sandbox's save-time
check, renders with its sample facts, and reads in the member's language."""

import datetime as dt

import pytest

from notifications import email_kinds, email_render, email_samples, emails

pytestmark = pytest.mark.django_db

PARTS = ("subject", "html_body", "text_body")
CASES = [(kind, language) for kind in email_kinds.KINDS for language in email_render.LANGUAGE_CODES]


def _shipped_folder(language):
    return email_render.TEMPLATE_DIR / language


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_every_shipped_default_passes_the_save_time_check(kind, language):
    # The language's own files, not the English fallback.
    assert (_shipped_folder(language) / f"{kind}.subject.txt").exists()
    parts = email_render.default_parts(kind, language)
    for part in PARTS:
        source = getattr(parts, part)
        assert source.strip(), f"{language}/{kind} {part} is empty"
        assert email_render.template_problems(source, kind) == [], f"{language}/{kind} {part}"


@pytest.mark.parametrize("kind", list(email_kinds.KINDS))
def test_every_kind_has_sample_facts_for_each_of_its_variables(kind):
    data = email_samples.sample_data(kind, language="en")
    assert set(data) == set(email_kinds.VARIABLES[kind])


@pytest.mark.parametrize(("kind", "language"), CASES)
def test_every_default_renders_with_its_sample_facts(program, kind, language):
    member = email_samples.sample_member(program)
    rendered = emails.message_render(
        program=program,
        member=member,
        kind=kind,
        data=email_samples.sample_data(kind, language=language, today=dt.date(2027, 3, 10)),
        language=language,
    )
    assert rendered.subject
    assert "{" not in rendered.subject
    assert program.name in rendered.html
    assert "{{" not in rendered.html
    assert "{%" not in rendered.html
    assert "{{" not in rendered.text
    assert "{%" not in rendered.text
    if email_kinds.KINDS[kind].to == "member" and kind != "login_link":
        assert "Alex" in rendered.text  # greeted by name


def test_the_redemption_email_shows_the_code_its_value_expiry_and_how_to_use_it(program):
    data = email_samples.sample_data("reward_redeemed", today=dt.date(2027, 3, 10))
    rendered = emails.message_render(
        program=program, member=email_samples.sample_member(program), kind="reward_redeemed", data=data
    )
    assert "SAVE-7K2Q-9XPD" in rendered.html
    assert "10.00 EUR" in rendered.html
    assert "May 9, 2027" in rendered.html  # valid_until, 60 days on, in the date format of English
    assert "Enter the code at checkout" in rendered.html


def test_the_last_chance_warning_differs_from_the_first(program):
    member = email_samples.sample_member(program)
    data = email_samples.sample_data("points_expiring", today=dt.date(2027, 3, 10))
    first = emails.message_render(program=program, member=member, kind="points_expiring", data=data)
    last = emails.message_render(
        program=program, member=member, kind="points_expiring", data={**data, "last_chance": True}
    )
    assert "Last chance" in last.subject
    assert "Last chance" not in first.subject
    assert "April 9, 2027" in first.html  # each lot's date and amount
    assert "150" in first.html
    assert "90" in first.html


def test_a_french_member_gets_the_french_default_with_french_dates(program):
    member = email_samples.sample_member(program)
    member.language = "fr"
    data = email_samples.sample_data("points_expiring", language="fr", today=dt.date(2027, 3, 10))
    rendered = emails.message_render(program=program, member=member, kind="points_expiring", data=data)
    assert "expirent" in rendered.subject
    assert "9 avril 2027" in rendered.html
    assert "Se désabonner" in rendered.html
    assert 'lang="fr"' in rendered.html


@pytest.mark.parametrize(
    ("color", "on_color"), [("#1F6FEB", "#ffffff"), ("#FFE600", "#1f2328"), ("#111111", "#ffffff")]
)
def test_the_header_text_reads_on_the_brand_colour(color, on_color):
    colors = email_render.brand_colors(color)
    assert colors["on_color"] == on_color
    assert email_render.contrast(colors["color"], colors["on_color"]) >= 4.5
    # On the white page a pale brand colour is not used for links.
    assert email_render.contrast(colors["link"], "#ffffff") >= 4.5
