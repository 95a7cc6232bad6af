from django.apps import AppConfig


class ProgramFilesConfig(AppConfig):
    name = "programfiles"
    verbose_name = "Program files"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (the demo's draft and version)
