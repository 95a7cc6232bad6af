"""Automations get `email_transactional`: their email is now a message of the notifications
outbox (kind `custom`), marketing (consent needed) unless the automation is marked
transactional. Existing automations stay marketing, as their emails were (sent only to members
who consented)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0004_activity_keys_into_idempotency_store"),
    ]

    operations = [
        migrations.AddField(
            model_name="automation",
            name="email_transactional",
            field=models.BooleanField(
                default=False,
                help_text="The email is a service message (e.g. a status change the member must know of): it goes "
                "to every member with an address. Unticked, it is marketing: only members who consented get it.",
            ),
        ),
    ]
