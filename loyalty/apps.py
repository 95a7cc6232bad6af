from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty core"
    default_auto_field = "django.db.models.BigAutoField"
