"""Staff admin of the loyalty core, one module per concern (docs/contributing.md: declarative;
ledger models read-only; every write that touches points goes through `loyalty.services`).

- `base`: the read-only admin base and the large-table change lists every app uses;
- `programs`, `members` (and the members' posting pages in `postings`);
- `ledger` (entries, allocations, activities, idempotency records) and `jobs`, read-only;
- `api_keys`: program API keys, shown once on creation;
- `deletion_requests`: members' requests to erase their data, confirmed or declined by staff;
- `timezones`: dates shown and typed in the program's time zone;
- `audit`: the staff audit trail, adjustment requests and members' notes, read-only.

Scale (docs/architecture.md): change lists never count a whole table, sort only by the primary
key, and the member search turns an email or id into an exact, indexed look-up.
"""

from . import api_keys, audit, deletion_requests, jobs, ledger, members, programs  # noqa: F401  (registers the admins)
from .base import CappedCountPaginator, LargeTableAdmin, ReadOnlyAdmin, ReadOnlyInline
from .members import MEMBER_PAGE_LINKS
from .postings import can_adjust_points, can_transfer_points
from .timezones import ProgramTimeZoneAdmin, program_time_column

__all__ = [
    "MEMBER_PAGE_LINKS",
    "CappedCountPaginator",
    "LargeTableAdmin",
    "ProgramTimeZoneAdmin",
    "ReadOnlyAdmin",
    "ReadOnlyInline",
    "can_adjust_points",
    "can_transfer_points",
    "program_time_column",
]
