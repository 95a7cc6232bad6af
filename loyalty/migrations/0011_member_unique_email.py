"""One member per email in a program, case-insensitively: a unique index on
(program_id, lower(email)) for non-empty emails.

Existing duplicates would make the index fail with a bare IntegrityError. The migration looks
for them first and, if there are any, stops with a message naming them (program, email,
member ids), changing nothing: staff decide which member keeps the email (merge the accounts
or change the other emails), then run `migrate` again (docs/decisions.md). Nothing is merged
or changed automatically: the members are points accounts.
"""

from django.db import migrations, models
from django.db.models.functions import Lower

DUPLICATES_SQL = """
SELECT p.slug, lower(m.email), array_agg(m.id ORDER BY m.id)
FROM loyalty_member m JOIN loyalty_program p ON p.id = m.program_id
WHERE m.email <> ''
GROUP BY p.slug, lower(m.email)
HAVING count(*) > 1
ORDER BY p.slug, lower(m.email)
"""
SHOWN = 50


def refuse_duplicate_emails(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(DUPLICATES_SQL)
        rows = cursor.fetchall()
    if not rows:
        return
    lines = [f"  program {slug}: {email} -> members {', '.join(map(str, ids))}" for slug, email, ids in rows[:SHOWN]]
    if len(rows) > SHOWN:
        lines.append(f"  ... and {len(rows) - SHOWN} more emails")
    raise RuntimeError(
        f"Cannot add the unique email index: {len(rows)} email(s) belong to several members of one program.\n"
        + "\n".join(lines)
        + "\nGive each of these members a distinct email (or clear it) in the admin, then run migrate again."
        + "\n(The demo database of `make run` is disposable: `make clean` then `make run` starts it afresh.)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0010_program_enrol_on_first_purchase"),
    ]

    operations = [
        migrations.RunPython(refuse_duplicate_emails, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="member",
            constraint=models.UniqueConstraint(
                models.F("program"),
                Lower("email"),
                condition=models.Q(("email", ""), _negated=True),
                name="member_unique_email",
                violation_error_code="duplicate_email",
                violation_error_message="A member of this program already has this email.",
            ),
        ),
    ]
