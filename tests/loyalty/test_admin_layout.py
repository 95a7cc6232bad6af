"""The admin's shared pieces are used everywhere: the read-only base and the page header."""

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import RequestFactory

from loyalty.admin import ReadOnlyAdmin

PROJECT_APPS = ("loyalty", "cards", "rewards", "tiers", "workflows", "notifications")


@pytest.mark.django_db
def test_every_admin_that_refuses_add_change_and_delete_derives_from_the_read_only_base(admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    read_only = [
        model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS
        and not model_admin.has_add_permission(request)
        and not model_admin.has_change_permission(request)
        and not model_admin.has_delete_permission(request)
    ]
    assert len(read_only) >= 10
    others = [type(model_admin).__name__ for model_admin in read_only if not isinstance(model_admin, ReadOnlyAdmin)]
    assert others == []


def test_every_custom_admin_page_extends_the_page_header_template():
    base = Path(settings.BASE_DIR)
    pages = [
        path
        for path in [*base.glob("templates/admin/**/*.html"), *base.glob("*/templates/admin/**/*.html")]
        if '{% extends "admin/base_site.html" %}' in path.read_text()
    ]
    assert [str(p.relative_to(base)) for p in pages] == ["templates/admin/custom_page.html"]
