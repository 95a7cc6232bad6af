"""The staff pages of the dashboard app, under /admin/dashboard/ (config/urls.py)."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
]

# The finance reports (dashboard/views_reports.py, docs/liability.md).
from dashboard import views_reports  # noqa: E402

urlpatterns += [
    path("reports/liability/", views_reports.report_liability, name="report_liability"),
    path("reports/liability.csv", views_reports.report_liability, {"export": "csv"}, name="report_liability_csv"),
    path("reports/liability.pdf", views_reports.report_liability, {"export": "pdf"}, name="report_liability_pdf"),
    path("reports/breakage/", views_reports.report_breakage, name="report_breakage"),
    path("reports/breakage.csv", views_reports.report_breakage, {"export": "csv"}, name="report_breakage_csv"),
    path("reports/breakage.pdf", views_reports.report_breakage, {"export": "pdf"}, name="report_breakage_pdf"),
    path("reports/deferred-revenue/", views_reports.report_deferred, name="report_deferred"),
    path("reports/deferred-revenue.csv", views_reports.report_deferred, {"export": "csv"}, name="report_deferred_csv"),
    path("reports/deferred-revenue.pdf", views_reports.report_deferred, {"export": "pdf"}, name="report_deferred_pdf"),
]
