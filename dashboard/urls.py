"""The staff pages of the dashboard app, under /admin/dashboard/ (config/urls.py)."""

from django.urls import path
from django.views.generic import RedirectView

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    # "Reports" in the navigation: the first report.
    path("reports/", RedirectView.as_view(pattern_name="dashboard:report_liability"), name="reports"),
]

# The member page and its actions (docs/back-office.md, "A member's page").
from dashboard import views_member  # noqa: E402

urlpatterns += [
    path("members/search/", views_member.member_search, name="member_search"),
    path("members/<int:member_id>/", views_member.member_page, name="member"),
    path("members/<int:member_id>/ledger/", views_member.member_ledger, name="member_ledger"),
    path("members/<int:member_id>/adjust/", views_member.adjust, name="member_adjust"),
    path("members/<int:member_id>/transfer/", views_member.transfer, name="member_transfer"),
    path("members/<int:member_id>/block/", views_member.block, name="member_block"),
    path("members/<int:member_id>/unblock/", views_member.unblock, name="member_unblock"),
    path("members/<int:member_id>/cards/<int:card_id>/replace/", views_member.replace_card, name="member_card_replace"),
    path("members/<int:member_id>/redeem/", views_member.redeem, name="member_redeem"),
    path("members/<int:member_id>/coupons/use/", views_member.coupon_use, name="member_coupon_use"),
    path("members/<int:member_id>/coupons/cancel/", views_member.coupon_cancel, name="member_coupon_cancel"),
    path("members/<int:member_id>/emails/resend/", views_member.resend, name="member_resend"),
    path("members/<int:member_id>/refund/", views_member.refund, name="member_refund"),
    path("members/<int:member_id>/notes/", views_member.note, name="member_note"),
    path("adjustments/", views_member.adjustment_requests, name="adjustment_requests"),
    path("adjustments/<int:request_id>/approve/", views_member.adjustment_approve, name="adjustment_approve"),
    path("adjustments/<int:request_id>/reject/", views_member.adjustment_reject, name="adjustment_reject"),
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

urlpatterns += [
    path("chart/<slug:key>.<str:fmt>", views.chart, name="chart"),
]
