from django.apps import AppConfig


class ProgramFilesConfig(AppConfig):
    name = "programfiles"
    verbose_name = "Program files"
    default_auto_field = "django.db.models.BigAutoField"
