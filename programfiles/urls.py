"""The program-file pages, under /admin/program-files/ (config/urls.py), inside the admin's login."""

from django.contrib import admin
from django.urls import path

from programfiles import views

app_name = "programfiles"

urlpatterns = [
    path("<int:program_id>/download/", admin.site.admin_view(views.download), name="download"),
    path("<int:program_id>/upload/", admin.site.admin_view(views.upload), name="upload"),
]
