"""Programs get `enrol_on_first_purchase`: on for programs created from now on, off for the
programs that exist when this migration runs, so their shops keep today's answer (a purchase
for an unknown customer is a 404) until staff turn it on (docs/decisions.md)."""

from django.db import migrations, models

HELP = (
    "A purchase reported over the API for an unknown external id enrols that customer "
    "(with the email and names the shop sends) in the same transaction; off: such a purchase is refused "
    "(404) until the shop enrols the customer."
)


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0009_member_birthday_index"),
    ]

    operations = [
        # Existing rows are filled with False...
        migrations.AddField(
            model_name="program",
            name="enrol_on_first_purchase",
            field=models.BooleanField(default=False, help_text=HELP),
        ),
        # ...then new programs default to True (a model default: no database change).
        migrations.AlterField(
            model_name="program",
            name="enrol_on_first_purchase",
            field=models.BooleanField(default=True, help_text=HELP),
        ),
    ]
