"""Make the ledger append-only in the database itself (DESIGN.md: entries are never updated or
deleted, a credit lot's `remaining` aside). A row trigger refuses a DELETE of an entry or an
allocation, an UPDATE of an allocation, and an UPDATE of an entry that touches anything but
`remaining` or sets an already stamped `released_at`. The WHEN clause keeps the common
update (remaining only) free of a PL/pgSQL call."""

from django.db import migrations

SQL = """
CREATE FUNCTION loyalty_refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER loyalty_ledgerentry_no_delete BEFORE DELETE ON loyalty_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_ledger_change();
CREATE TRIGGER loyalty_ledgerentry_frozen_columns BEFORE UPDATE ON loyalty_ledgerentry
    FOR EACH ROW WHEN (
        (OLD.id, OLD.program_id, OLD.member_id, OLD.kind, OLD.points, OLD.created_at, OLD.occurred_at,
         OLD.available_at, OLD.expires_at, OLD.reason, OLD.reference, OLD.activity_id,
         OLD.source_entry_id, OLD.created_by_id)
        IS DISTINCT FROM
        (NEW.id, NEW.program_id, NEW.member_id, NEW.kind, NEW.points, NEW.created_at, NEW.occurred_at,
         NEW.available_at, NEW.expires_at, NEW.reason, NEW.reference, NEW.activity_id,
         NEW.source_entry_id, NEW.created_by_id)
        OR (OLD.released_at IS NOT NULL AND NEW.released_at IS DISTINCT FROM OLD.released_at)
    )
    EXECUTE FUNCTION loyalty_refuse_ledger_change();
CREATE TRIGGER loyalty_allocation_frozen BEFORE UPDATE OR DELETE ON loyalty_allocation
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_ledger_change();
"""

REVERSE = """
DROP TRIGGER loyalty_allocation_frozen ON loyalty_allocation;
DROP TRIGGER loyalty_ledgerentry_frozen_columns ON loyalty_ledgerentry;
DROP TRIGGER loyalty_ledgerentry_no_delete ON loyalty_ledgerentry;
DROP FUNCTION loyalty_refuse_ledger_change();
"""


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
