"""Staff groups (DESIGN.md: permissions by Django groups).

- owner: runs the program: programs, members, the beat schedules and the staff accounts;
  posts points by hand (adjustments, transfers: `loyalty.admin.can_adjust_points`).
- manager: day-to-day: members (add, change, block), views everything else of the loyalty
  core and the schedules; posts points by hand.
- support: answers customers: views members and their history, corrects profiles and
  blocks/unblocks; cannot post points.

Ledger models (entries, allocations, idempotency records, job runs, activities) are
view-only for everyone: the admin refuses changes whatever the permissions. A group that
exists is kept and only gains missing permissions, so re-running never strips what an owner
granted by hand. Apps added later extend these groups in their own migrations.
"""

from django.db import migrations

VIEW_LOYALTY = [
    f"loyalty.view_{m}"
    for m in ("program", "member", "activity", "ledgerentry", "allocation", "idempotencyrecord", "ledgerjobrun")
]
BEAT_MODELS = ("periodictask", "crontabschedule", "intervalschedule", "solarschedule", "clockedschedule")

GROUPS = {
    "owner": [
        *VIEW_LOYALTY,
        "loyalty.add_program",
        "loyalty.change_program",
        "loyalty.add_member",
        "loyalty.change_member",
        *[f"django_celery_beat.{action}_{m}" for m in BEAT_MODELS for action in ("view", "add", "change", "delete")],
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "auth.view_group",
    ],
    "manager": [
        *VIEW_LOYALTY,
        "loyalty.add_member",
        "loyalty.change_member",
        *[f"django_celery_beat.view_{m}" for m in BEAT_MODELS],
    ],
    "support": [
        "loyalty.view_program",
        "loyalty.view_member",
        "loyalty.change_member",
        "loyalty.view_activity",
        "loyalty.view_ledgerentry",
        "loyalty.view_allocation",
    ],
}


def create_groups(apps, schema_editor):
    # Permissions are created after `migrate` (post_migrate); on a fresh database they do not
    # exist yet at this point, so create them now for every app of the migration state.
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codes in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = set()
        for code in codes:
            app_label, codename = code.split(".")
            wanted.add((app_label, codename))
        perms = [
            p
            for p in Permission.objects.select_related("content_type").filter(codename__in={c for _, c in wanted})
            if (p.content_type.app_label, p.codename) in wanted
        ]
        missing = wanted - {(p.content_type.app_label, p.codename) for p in perms}
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)


def remove_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0003_beat_schedules"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create_groups, remove_groups)]
