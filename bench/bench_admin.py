"""The staff change lists at scale (issue 13, section 6): 1,000,000 members (each with a card)
and 10,000,000 ledger entries, generated with `INSERT ... SELECT generate_series` in a bench
database; then each page timed through Django's test client (the whole admin view: the
queries, the template, no HTTP server), logged in as a superuser.

Pages: the member list (first page; a search by part of an email, by a name, by a card number and
by its first digits; the "blocked" filter; the member autocomplete) and the ledger list (first
page; a member's entries; a filter on a common kind and on a rare one; on a kind no row has).
For each: the median and worst of `--repeat` runs, the statements run, and whether any counted
a whole table (a COUNT without LIMIT).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench
    .venv/bin/python bench/bench_admin.py                 # generate (~10 min) and time
    .venv/bin/python bench/bench_admin.py --reuse         # time again on the same data

Results: docs/performance.md, "Staff change lists".
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

FIRST_NAMES = [
    "Marie", "Jean", "Pierre", "Sophie", "Lucas", "Emma", "Louis", "Chloé", "Hugo", "Léa", "Nathan", "Manon",
    "Paul", "Camille", "Arthur", "Sarah", "Jules", "Inès", "Adam", "Julie", "Thomas", "Laura", "Nicolas", "Anna",
    "Maxime", "Clara", "Antoine", "Alice", "Victor", "Zoé", "Ethan", "Lina", "Noah", "Eva", "Tom", "Jade",
    "Raphaël", "Rose", "Gabriel", "Louise",
]  # fmt: skip
LAST_NAMES = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon",
    "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier", "Morel",
    "Girard", "Andre", "Lefevre", "Mercier", "Dupont", "Lambert", "Bonnet", "Francois", "Martinez", "Legrand",
    "Garnier", "Faure", "Rousseau", "Blanc", "Guerin", "Muller", "Henry", "Roussel", "Nicolas", "Perrin",
    "Morin", "Mathieu", "Clement", "Gauthier", "Dumont", "Lopez", "Fontaine", "Chevalier", "Robin", "Masson",
    "Sanchez", "Gerard", "Nguyen", "Boyer", "Denis", "Lemaire", "Duval", "Joly", "Gautier",
]  # fmt: skip
DOMAINS = ["gmail.com", "orange.fr", "free.fr", "yahoo.fr", "hotmail.com", "outlook.fr", "laposte.net", "sfr.fr"]
CARD_BASE = 7_000_000_000_000  # card numbers 7000000000001.. (13 digits)
CHUNK = 1_000_000

MEMBER_SQL = """
INSERT INTO loyalty_member (id, program_id, external_id, email, first_name, last_name, birthday, referral_code,
    referred_by_id, status, enrollment_channel, email_consent, user_id, enrolled_at,
    available, pending, lifetime_earned, redeemed, expired)
SELECT i, %(p)s, 'cust-' || i,
       lower(f.name || '.' || l.name || i || '@' || (%(domains)s::text[])[1 + i %% 8]),
       f.name, l.name, NULL, 'B' || i, NULL,
       CASE WHEN i %% 1000 = 0 THEN 'blocked' ELSE 'active' END, 'import', false, NULL,
       now() - interval '400 days', 0, 0, 0, 0, 0
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i,
LATERAL (SELECT (%(first)s::text[])[1 + (i * 7) %% 40] AS name) AS f,
LATERAL (SELECT (%(last)s::text[])[1 + (i * 13) %% 60] AS name) AS l
"""

CARD_SQL = """
INSERT INTO cards_card (id, number, kind, status, created_at, assigned_at, member_id, program_id)
SELECT i, (%(base)s + i)::text, 'physical', 'active', now(), now(), i, %(p)s
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""

# Entry n: member ((n-1) * k mod m) + 1 (scattered as in production); kinds by n mod 100:
# 0-89 earn, 90-97 redeem, 98 adjust (+), 99 expire; no reversal (a kind without rows).
ENTRY_SQL = """
INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, occurred_at,
    available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id)
SELECT n, %(p)s, ((n - 1) * %(k)s) %% %(m)s + 1, x.kind, x.pts, CASE WHEN x.pts > 0 THEN x.pts ELSE 0 END,
       t, t, CASE WHEN x.pts > 0 THEN t END, CASE WHEN x.pts > 0 THEN t END, NULL,
       CASE x.kind WHEN 'earn' THEN 'Purchase' WHEN 'adjust' THEN 'Goodwill gesture' ELSE '' END,
       'o' || n, NULL, NULL, NULL
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n,
LATERAL (SELECT now() - interval '540 days' + make_interval(secs => n * %(step)s) AS t) AS a,
LATERAL (SELECT CASE WHEN n %% 100 < 90 THEN 'earn' WHEN n %% 100 < 98 THEN 'redeem'
                     WHEN n %% 100 = 98 THEN 'adjust' ELSE 'expire' END AS kind,
                CASE WHEN n %% 100 < 90 OR n %% 100 = 98 THEN 10 + n %% 90 ELSE -(5 + n %% 40) END AS pts) AS x
"""

TABLES = ("loyalty_member", "cards_card", "loyalty_ledgerentry")


def coprime_step(members: int) -> int:
    import math

    step = 7_919
    while math.gcd(step, members) != 1:
        step += 2
    return step


def load(program_id: int, members: int, entries: int) -> None:
    from django.db import transaction

    C.reset_ledger()
    C.execute("TRUNCATE cards_card, cards_cardevent CASCADE")
    params = {
        "p": program_id,
        "m": members,
        "k": coprime_step(members),
        "step": 540 * 86400.0 / max(entries, 1),
        "first": FIRST_NAMES,
        "last": LAST_NAMES,
        "domains": DOMAINS,
        "base": CARD_BASE,
    }
    C.execute("SET session_replication_role = replica")  # generated rows are consistent by construction
    C.execute("SET synchronous_commit = off")
    try:
        for sql, label, total in ((MEMBER_SQL, "members", members), (CARD_SQL, "cards", members)):
            with C.Timer() as t:
                for lo in range(1, total + 1, CHUNK):
                    with transaction.atomic():
                        C.execute(sql, {**params, "lo": lo, "hi": min(lo + CHUNK - 1, total)})
            print(f"load: {total:,} {label} in {t.seconds:.1f} s  [{C.load_snapshot()}]", flush=True)
        with C.Timer() as t:
            for lo in range(1, entries + 1, CHUNK):
                hi = min(lo + CHUNK - 1, entries)
                with transaction.atomic():
                    C.execute(ENTRY_SQL, {**params, "lo": lo, "hi": hi})
                print(f"  entries {hi:,}/{entries:,}", flush=True)
        print(f"load: {entries:,} entries in {t.seconds:.1f} s  [{C.load_snapshot()}]", flush=True)
    finally:
        C.execute("RESET session_replication_role")
        C.execute("RESET synchronous_commit")
    C.execute("SELECT setval(pg_get_serial_sequence('loyalty_member', 'id'), %s)", [max(members, 1)])
    C.execute("SELECT setval(pg_get_serial_sequence('cards_card', 'id'), %s)", [max(members, 1)])
    C.fix_entry_sequence()
    with C.Timer() as t:
        C.settle_database(TABLES)
    print(f"load: VACUUM ANALYZE + CHECKPOINT in {t.seconds:.1f} s", flush=True)


def cases(members: int) -> list[tuple[str, str, dict[str, str]]]:
    from loyalty.models import Member

    some = Member.objects.get(pk=members // 2 + 17)
    card = str(CARD_BASE + some.pk)
    part_of_email = some.email.split("@")[0][2:]  # e.g. "rie.dupont123" of marie.dupont123@...
    members_url, ledger_url = "/admin/loyalty/member/", "/admin/loyalty/ledgerentry/"
    return [
        ("members: first page", members_url, {}),
        (f"members: part of an email {part_of_email!r}", members_url, {"q": part_of_email}),
        (f"members: a name {some.first_name + ' ' + some.last_name!r}", members_url,
         {"q": f"{some.first_name} {some.last_name}"}),
        (f"members: part of a name {some.last_name[:4].lower()!r}", members_url, {"q": some.last_name[:4].lower()}),
        ("members: a card number", members_url, {"q": card}),
        ("members: a card's first 10 digits", members_url, {"q": card[:10]}),
        ("members: filter status=blocked", members_url, {"status__exact": "blocked"}),
        ("members: autocomplete 'dupo' (card form)", "/admin/autocomplete/",
         {"term": "dupo", "app_label": "cards", "model_name": "card", "field_name": "member"}),
        ("ledger: first page", ledger_url, {}),
        ("ledger: one member's entries", ledger_url, {"q": str(some.pk)}),
        ("ledger: filter kind=earn (90%)", ledger_url, {"kind__exact": "earn"}),
        ("ledger: filter kind=adjust (1%)", ledger_url, {"kind__exact": "adjust"}),
        ("ledger: filter kind=reversal (none)", ledger_url, {"kind__exact": "reversal"}),
    ]  # fmt: skip


def time_pages(repeat: int, members: int) -> list[list[str]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    rows = []
    for label, url, params in cases(members):
        seconds, statements, full_counts, shown = [], 0, 0, ""
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url, params)
                seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, (label, response.status_code)
            statements = len(queries)
            full_counts = sum(1 for q in queries if "COUNT(" in q["sql"].upper() and " LIMIT " not in q["sql"].upper())
        body = response.content.decode()
        if url.endswith("/autocomplete/"):
            shown = f"{len(response.json()['results'])} results"
        else:
            rows_shown = body.count('<th class="field-')  # the first cell of each result row
            paginator = body[body.find('<p class="paginator">') :]
            count = re.search(r"(About [\d,]+|More than \d+|\d+) (members?|ledger entr(?:y|ies))", paginator)
            shown = f"{rows_shown} rows of {count.group(1).lower() if count else '?'}"
        rows.append(
            [
                label,
                f"{statistics.median(seconds) * 1000:.0f} ms",
                f"{max(seconds) * 1000:.0f} ms",
                str(statements),
                str(full_counts),
                shown,
            ]
        )
        print(f"  {label}: {statistics.median(seconds) * 1000:.0f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each page (after one warm-up)")
    parser.add_argument("--reuse", action="store_true", help="keep the generated data if its sizes match")
    C.add_common_args(parser)
    args = parser.parse_args()
    C.setup_django(force_db=args.force_db)
    C.print_header("bench_admin: staff change lists")
    program = C.bench_program(name="Bench", timezone="Europe/Paris")
    have = (C.scalar("SELECT count(*) FROM loyalty_member"), C.scalar("SELECT count(*) FROM loyalty_ledgerentry"))
    if args.reuse and have == (args.members, args.entries):
        print(f"reusing {args.members:,} members and {args.entries:,} entries")
    else:
        load(program.pk, args.members, args.entries)
    print()
    time_pages(1, args.members)  # warm-up: caches, the first plan of each statement
    rows = time_pages(args.repeat, args.members)
    print()
    print(f"{args.members:,} members (each with a card), {args.entries:,} ledger entries; {args.repeat} runs each")
    C.print_table(["page", "median", "worst", "statements", "full counts", "shown / count"], rows)
    print(f"load after: {C.load_snapshot()}")


if __name__ == "__main__":
    main()
