from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications: emails and webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from . import email_receivers, email_schedules, emails, receivers  # noqa: F401  (signals, enrichers)
        from .models import EmailSettings

        post_save.connect(
            emails.settings_forget, sender=EmailSettings, dispatch_uid="notifications.email_settings_saved"
        )
        post_delete.connect(
            emails.settings_forget, sender=EmailSettings, dispatch_uid="notifications.email_settings_deleted"
        )
