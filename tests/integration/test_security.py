"""Security of the staff side (issue 13, section 7): the login lock-out (django-axes), the
Content-Security-Policy of the admin and the API docs, and production settings that pass
`manage.py check --deploy` with a real HSTS default."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse

from tests.loyalty.factories import StaffFactory

PASSWORD = "right-password-1"


@pytest.fixture
def staff_user(db):
    user = StaffFactory(is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def log_in(client, username: str, password: str):
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})


# --- django-axes ----------------------------------------------------------------------------------


def test_the_staff_login_locks_out_after_repeated_failures(client, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert log_in(client, staff_user.username, "wrong").status_code == 200  # the form again

    assert log_in(client, staff_user.username, "wrong").status_code == 429  # the third failure locks
    # Locked out: even the right password is refused, before it is checked.
    response = log_in(client, staff_user.username, PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_lockout_ends_after_the_cool_off(client, staff_user, settings):
    import datetime as dt

    import time_machine
    from django.utils import timezone

    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = 1.0  # hours (AXES_COOLOFF_HOURS)
    log_in(client, staff_user.username, "wrong")
    assert log_in(client, staff_user.username, "wrong").status_code == 429
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=61)):
        assert log_in(client, staff_user.username, PASSWORD).status_code == 302


def test_a_successful_login_resets_the_failures(client, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    log_in(client, staff_user.username, "wrong")
    log_in(client, staff_user.username, "wrong")
    assert log_in(client, staff_user.username, PASSWORD).status_code == 302
    client.logout()

    log_in(client, staff_user.username, "wrong")
    log_in(client, staff_user.username, "wrong")
    assert log_in(client, staff_user.username, PASSWORD).status_code == 302


def test_the_lockout_is_per_username_and_address(client, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    log_in(client, "someone-else", "wrong")
    log_in(client, "someone-else", "wrong")

    assert log_in(client, staff_user.username, PASSWORD).status_code == 302


# --- Content-Security-Policy ------------------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("url", ["/admin/login/", "/api/docs/", "/api/redoc/"])
def test_the_admin_and_the_api_docs_carry_the_staff_policy(client, db, url):
    response = client.get(url)

    assert response.status_code == 200
    directives = policy(response)
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"][0] == "'self'"
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'self'"]


def test_admin_pages_after_login_carry_the_policy(client, staff_user):
    client.force_login(staff_user)
    for name in ("admin:sections", "admin:loyalty_member_changelist", "admin:loyalty_member_add"):
        response = client.get(reverse(name))
        assert response.status_code == 200
        # Scripts from this site; a nonce only on pages with an inline script (next test).
        assert policy(response)["script-src"] == ["'self'"]


def test_swagger_starts_from_a_script_file_not_an_inline_script(client, db):
    page = client.get("/api/docs/").content.decode()

    assert '<script src="/api/docs/?script' in page.replace("&amp;", "&")
    assert "<script>" not in page
    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def test_the_email_editors_inline_script_carries_the_nonce(client, staff_user, program):
    client.force_login(staff_user)
    response = client.get(
        reverse("admin:notifications_emailtemplate_editor", args=[program.pk, "reward_redeemed", "en"])
    )
    assert response.status_code == 200
    nonce = response["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]

    assert f'<script nonce="{nonce}">' in response.content.decode()


def test_the_portal_keeps_its_own_stricter_policy(client, program):
    response = client.get(f"/p/{program.slug}/login")

    assert policy(response)["default-src"] == ["'none'"]


# --- production settings ----------------------------------------------------------------------------


def production_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "AXES_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="loyalty.example.com",
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty"),
        CELERY_BROKER_URL="memory://",
    )
    return env


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_deploy_check_is_clean_under_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_sends_hsts_for_a_year_with_subdomains_by_default():
    script = (
        "from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SECURE_SSL_REDIRECT)"
    )
    result = run_manage("shell", "-c", script, env=production_env())
    assert result.stdout.split()[-4:] == ["31536000", "True", "False", "True"], result.stderr

    shorter = {**production_env(), "DJANGO_SECURE_HSTS_SECONDS": "3600", "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "0"}
    result = run_manage("shell", "-c", script, env=shorter)
    assert result.stdout.split()[-4:-2] == ["3600", "False"], result.stderr
    # Turning subdomains off is a choice the deploy check then accepts.
    assert run_manage("check", "--deploy", "--fail-level", "WARNING", env=shorter).returncode == 0


def test_no_staff_template_has_an_inline_handler_or_a_script_without_the_nonce():
    """The staff pages' policy refuses inline event handlers and inline scripts without the
    request's nonce: use data-confirm / data-confirm-click / data-disable-on-submit /
    data-submit-form (admin/loyalty/behaviours.js) and <script nonce="{{ request.csp_nonce }}">."""
    import re
    from pathlib import Path

    base = Path(settings.BASE_DIR)
    templates = [
        *base.glob("templates/admin/**/*.html"),
        *base.glob("*/templates/admin/**/*.html"),
        *base.glob("*/templates/dashboard/**/*.html"),
    ]
    offenders = []
    for path in templates:
        text = path.read_text()
        if re.search(r"\son[a-z]+\s*=", text):
            offenders.append(f"{path.relative_to(base)}: inline event handler")
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and "nonce=" not in tag:
                offenders.append(f"{path.relative_to(base)}: {tag}")
    assert offenders == []
