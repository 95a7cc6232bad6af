"""Staff admin of the loyalty core, one module per concern (docs/contributing.md: declarative;
ledger models read-only; every write that touches points goes through `loyalty.services`).

- `base`: the read-only admin base and the large-table change lists every app uses;
- `programs`, `members` (and the members' posting pages in `postings`);
- `ledger` (entries, allocations, activities, idempotency records) and `jobs`, read-only;
- `api_keys`: program API keys, shown once on creation;
- `deletion_requests`: members' requests to erase their data, confirmed or declined by staff;
- `timezones`: dates shown and typed in the program's time zone;
- `audit`: the staff audit trail, adjustment requests and members' notes, read-only.
- `schedules`: the beat's scheduled jobs in words and in the programs' time zones.
- `scope`: staff limited to programs (`ProgramScopedAdmin`); `staff`: the roles and programs on
  the users' admin pages.

Scale (docs/architecture.md, docs/back-office.md): change lists never count a whole table (an
unfiltered list shows PostgreSQL's estimate), sort only by the primary key, and the member search
uses indexes only (ids, trigram indexes on emails and names, card numbers).
"""

from . import api_keys, audit, deletion_requests, jobs, ledger, members, programs, schedules, staff  # noqa: F401  (registers the admins)
from .base import CappedCountPaginator, LargeTableAdmin, ReadOnlyAdmin, ReadOnlyInline, truncated_column
from .members import MEMBER_PAGE_LINKS, MEMBER_SEARCHES, member_search
from .postings import can_adjust_points, can_transfer_points
from .scope import ProgramScopedAdmin, program_path_of, scope_form
from .timezones import ProgramTimeZoneAdmin, program_time_column

__all__ = [
    "MEMBER_PAGE_LINKS",
    "MEMBER_SEARCHES",
    "CappedCountPaginator",
    "LargeTableAdmin",
    "ProgramScopedAdmin",
    "ProgramTimeZoneAdmin",
    "ReadOnlyAdmin",
    "ReadOnlyInline",
    "can_adjust_points",
    "can_transfer_points",
    "member_search",
    "program_path_of",
    "program_time_column",
    "scope_form",
    "truncated_column",
]
