"""Staff analytics: daily roll-ups, the dashboard and the liability report (DESIGN.md)."""

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard and reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from loyalty.signals import demo_loaded

        from .member_demo import add_demo_member_story

        # After the other apps' demo parts (INSTALLED_APPS order): the story uses their data.
        demo_loaded.connect(add_demo_member_story, dispatch_uid="dashboard.add_demo_member_story")
        from . import receivers  # noqa: F401  (connects to loyalty's signals)
