"""The program-file pages, under /admin/program-files/ (config/urls.py), inside the admin's login."""

from django.contrib import admin
from django.urls import path

from programfiles import simulate, views

app_name = "programfiles"

urlpatterns = [
    path("<int:program_id>/download/", admin.site.admin_view(views.download), name="download"),
    path("<int:program_id>/upload/", admin.site.admin_view(views.upload), name="upload"),
    # docs/simulation.md: a period's activities replayed against a rule set, nothing written.
    path("simulate/", admin.site.admin_view(simulate.simulate), name="simulate"),
]
