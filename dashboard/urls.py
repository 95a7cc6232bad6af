"""The staff pages of the dashboard app, under /admin/dashboard/ (config/urls.py)."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
]
urlpatterns += [
    path("chart/<slug:key>.<str:fmt>", views.chart, name="chart"),
]
