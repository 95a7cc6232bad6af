"""Staff roles and staff limited to programs (issue 13, docs/back-office.md "Roles and programs").

- `StaffProgram`: the programs a member of staff works on (none: every program).
- `loyalty.view_reports` (on Program): the dashboard and the reports.
- The three groups get their final names and permissions: "Owner", "Manager", "Support"
  (the lowercase groups of migration 0004 are renamed, so their users keep their role).

  * Owner: every permission of every app, except writing the ledger's tables (append-only,
    written by the services only).
  * Manager: program settings, earning rules and automations, rewards, tiers, card batches and
    imports, members, manual adjustments and transfers (the per-program limit is enforced where
    adjustments are posted), emails (settings, templates, outbox), the dashboard and reports
    (`loyalty.view_reports`), views of the rest.
  * Support: look-up of members, cards, coupons, tiers and the ledger; card actions (assign,
    block, replace); coupons (cancel, redeem at the counter); resending an email; small
    adjustments (the permission; the limit is enforced where they are posted); no settings.

Permissions are only added (a permission an owner granted by hand stays), except the ones a
role must not have (`REVOKED`). The permissions of every app are created here first: on a
fresh database they would only appear after `migrate` (post_migrate).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _crud(app, model, *actions):
    return [f"{app}.{action}_{model}" for action in actions]


VIEW = ("view",)
EDIT = ("view", "add", "change")

LOOK_UP = [
    *_crud("loyalty", "member", "view", "change"),
    *[f"loyalty.view_{m}" for m in ("activity", "ledgerentry", "allocation", "deletionrequest")],
    *[f"cards.view_{m}" for m in ("card", "cardevent", "cardbatch")],
    "cards.change_card",  # assign, block, unblock, replace
    *[f"tiers.view_{m}" for m in ("tier", "membertier", "tierchange")],
    *[f"rewards.view_{m}" for m in ("reward", "redemption")],
    "rewards.redeem_for_member",  # redeem at the counter, cancel a coupon
    *[f"workflows.view_{m}" for m in ("referral", "ruleaward", "automationrun")],
    *_crud("notifications", "emailmessage", "view", "change"),  # the outbox; change = resend
    "notifications.view_emailsuppression",
    "loyalty.adjust_points",
]

ROLES = {
    "Owner": None,  # every permission
    "Manager": [
        *LOOK_UP,
        *_crud("loyalty", "program", "view", "change"),
        "loyalty.view_reports",  # the dashboard and the reports
        "loyalty.add_member",
        "loyalty.transfer_points",
        *[f"loyalty.view_{m}" for m in ("idempotencyrecord", "ledgerjobrun", "programapikey")],
        "loyalty.change_deletionrequest",
        *_crud("cards", "cardbatch", *EDIT),
        "cards.view_cardbatchevent",
        *_crud("cards", "memberimport", *EDIT),
        *_crud("tiers", "tier", *EDIT),
        "tiers.set_tier_manually",
        *_crud("rewards", "reward", *EDIT),
        *_crud("rewards", "rewardsettings", *EDIT),
        *_crud("workflows", "earningrule", *EDIT),
        *_crud("workflows", "automation", *EDIT),
        *_crud("workflows", "referralsettings", *EDIT),
        *_crud("notifications", "emailsettings", *EDIT),
        *_crud("notifications", "emailtemplate", *EDIT),
        *_crud("notifications", "emailsuppression", "add", "delete"),
        *[f"notifications.view_{m}" for m in ("webhookendpoint", "webhookdelivery", "deliveryattempt")],
        *[
            f"django_celery_beat.view_{m}"
            for m in ("periodictask", "crontabschedule", "intervalschedule", "solarschedule", "clockedschedule")
        ],
    ],
    "Support": LOOK_UP,
}

# Settings a role must not reach (granted to "support" by migration 0004).
REVOKED = {"Support": ["loyalty.view_program"]}

# The ledger is append-only (DESIGN.md): nobody holds add, change or delete on its tables.
LEDGER_MODELS = ("ledgerentry", "allocation", "activity", "idempotencyrecord", "ledgerjobrun")

OLD_NAMES = {"owner": "Owner", "manager": "Manager", "support": "Support"}


def _permissions(Permission, codes):
    wanted = {tuple(code.split(".")) for code in codes}
    found = [
        p
        for p in Permission.objects.select_related("content_type").filter(codename__in={c for _, c in wanted})
        if (p.content_type.app_label, p.codename) in wanted
    ]
    missing = wanted - {(p.content_type.app_label, p.codename) for p in found}
    if missing:
        raise RuntimeError(f"Permissions missing: {sorted(missing)}")
    return found


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for old, new in OLD_NAMES.items():
        if not Group.objects.filter(name=new).exists():
            Group.objects.filter(name=old).update(name=new)
    grant_roles(Group, Permission)


def grant_roles(Group, Permission):
    """Create the groups and give them their permissions (the tests call it too, after a
    transactional test emptied the tables)."""
    for name, codes in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        if codes is None:
            ledger = {f"{action}_{model}" for action in ("add", "change", "delete") for model in LEDGER_MODELS}
            perms = list(Permission.objects.exclude(content_type__app_label="loyalty", codename__in=ledger))
        else:
            perms = _permissions(Permission, codes)
        group.permissions.add(*perms)
        if name in REVOKED:
            group.permissions.remove(*_permissions(Permission, REVOKED[name]))


def rename_back(apps, schema_editor):
    # The permissions stay; only the names of migration 0004 come back.
    Group = apps.get_model("auth", "Group")
    for old, new in OLD_NAMES.items():
        if not Group.objects.filter(name=old).exists():
            Group.objects.filter(name=new).update(name=old)


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0017_admin_search_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        # The latest migration of every app whose permissions the roles grant.
        ("cards", "0004_memberimport_opening_balance_counts_for_tier"),
        ("tiers", "0002_beat_schedule"),
        ("rewards", "0005_redemption_reward_issued_index"),
        ("workflows", "0006_earningrule_customer_text"),
        ("notifications", "0004_email_schedules"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="program",
            options={
                "ordering": ["name"],
                "permissions": [("view_reports", "Can see the dashboard and the reports")],
            },
        ),
        migrations.CreateModel(
            name="StaffProgram",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "program",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="staff", to="loyalty.program"
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="staff_programs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "program this user works on",
                "verbose_name_plural": "programs this user works on (none: every program)",
                "constraints": [models.UniqueConstraint(fields=("user", "program"), name="staff_program_unique")],
            },
        ),
        migrations.RunPython(create_roles, rename_back),
    ]
