"""One transaction per use case without a savepoint per layer (docs/performance.md).

A nested `transaction.atomic()` is a savepoint: two statements. A service called by a caller
that already holds the transaction open, and rolls it back whole on any exception raised
through the call, needs none: `atomic_or_join(join=True)` then joins the caller's transaction.
Anything else (no transaction open, or `join=False`) gets a normal `atomic()` block."""

from contextlib import AbstractContextManager, nullcontext

from django.db import connection, transaction


def atomic_or_join(*, join: bool) -> AbstractContextManager[object]:
    """`transaction.atomic()`, or nothing when `join` and a transaction is open: the caller
    promises to roll the whole transaction back on any exception raised through the block."""
    if join and connection.in_atomic_block:
        return nullcontext()
    return transaction.atomic()
