from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Earning rules"
    default_auto_field = "django.db.models.BigAutoField"
