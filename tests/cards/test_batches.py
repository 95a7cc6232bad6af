"""Bulk card creation: batch services, the Celery task and the batch admin pages."""

from __future__ import annotations

import csv
import io
import re
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from cards import batches, errors, numbers, services
from cards.models import Card, CardBatch, CardEvent
from cards.tasks import generate_batch_task
from loyalty.errors import IdempotencyConflict, InvalidInput
from tests import database
from tests.loyalty.factories import StaffFactory

pytestmark = pytest.mark.django_db

Status = CardBatch.Status


def _numbers_of(batch: CardBatch) -> list[str]:
    return list(Card.objects.filter(batch=batch).order_by("id").values_list("number", flat=True))


def _queued_batch(program, quantity: int, staff=None) -> CardBatch:
    """A pending batch whose generation was queued but has not run (the task is mocked)."""
    with mock.patch.object(generate_batch_task, "delay"):
        return batches.batch_create(program=program, quantity=quantity, actor=staff)


class _FailOnCall:
    """Stands in for `numbers.random_numbers` and raises on its `fail_on`-th call: a worker
    dying in the middle of a chunk."""

    def __init__(self, fail_on: int) -> None:
        self.calls = 0
        self.fail_on = fail_on
        self.real = numbers.random_numbers

    def __call__(self, prefix: str, length: int, count: int) -> list[str]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("worker killed")
        return self.real(prefix, length, count)


@pytest.fixture
def done_batch(program, staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        batch = batches.batch_create(program=program, quantity=23, note="Store 12", actor=staff)
    batch.refresh_from_db()
    assert batch.status == Status.DONE
    return batch


@pytest.fixture
def failed_batch(program, staff, monkeypatch):
    """A batch of 35 whose second chunk of 10 failed: 10 cards committed."""
    batch = _queued_batch(program, 35, staff)
    monkeypatch.setattr(numbers, "random_numbers", _FailOnCall(fail_on=2))
    batches.batch_generate(batch_id=batch.pk, chunk_size=10)
    monkeypatch.undo()
    batch.refresh_from_db()
    return batch


@pytest.fixture
def other_session():
    """A second database session (as another worker would have)."""
    conn = database.connect(autocommit=True)  # the same server as the test database
    yield conn
    conn.close()


# --------------------------------------------------------------------------------------------
# Creation and generation


def test_create_queues_generation_once_after_commit(program, staff, django_capture_on_commit_callbacks):
    with (
        mock.patch.object(generate_batch_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        batch = batches.batch_create(program=program, quantity=5, note="x", actor=staff)
        delay.assert_not_called()  # nothing escapes before the commit
    assert len(callbacks) == 1
    delay.assert_called_once_with(batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.created, batch.created_by) == (Status.PENDING, 0, staff)


def test_create_with_eager_tasks_returns_a_complete_batch(program, staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        batch = batches.batch_create(program=program, quantity=12, actor=staff)
    batch.refresh_from_db()
    assert (batch.status, batch.created, batch.percent) == (Status.DONE, 12, 100)
    assert batch.started_at
    assert batch.finished_at
    assert Card.objects.filter(batch=batch).count() == 12


@pytest.mark.parametrize("quantity", [0, -1, 5_000_001, "10", 2.5, True])
def test_create_refuses_a_quantity_outside_1_to_5_million(program, staff, quantity):
    with pytest.raises(InvalidInput) as exc:
        _queued_batch(program, quantity, staff)
    assert exc.value.details["field"] == "quantity"
    assert not CardBatch.objects.exists()


def test_create_refuses_a_number_format_too_small_for_the_quantity(program, staff):
    program.card_prefix, program.card_number_length = "12345", 12  # 6 random digits: 10^6 numbers
    program.save()
    with pytest.raises(InvalidInput):
        _queued_batch(program, 20_000, staff)


def test_generation_completes_in_chunks_with_exact_quantity_of_unique_valid_numbers(program, staff):
    program.card_prefix, program.card_number_length = "42", 14
    program.save()
    batch = _queued_batch(program, 30, staff)
    with mock.patch.object(numbers, "random_numbers", wraps=numbers.random_numbers) as generator:
        batch = batches.batch_generate(batch_id=batch.pk, chunk_size=7)
    assert [c.args[2] for c in generator.call_args_list] == [7, 7, 7, 7, 2]  # one call per chunk
    assert (batch.status, batch.created) == (Status.DONE, 30)
    got = _numbers_of(batch)
    assert len(got) == len(set(got)) == 30
    assert all(n.startswith("42") and len(n) == 14 and numbers.is_well_formed(n) for n in got)
    cards = Card.objects.filter(batch=batch)
    assert set(cards.values_list("status", "kind", "program_id", "member_id").distinct()) == {
        (Card.Status.UNASSIGNED, Card.Kind.PHYSICAL, program.pk, None)
    }


def test_generating_a_done_batch_again_creates_nothing(done_batch):
    before = _numbers_of(done_batch)
    batch = batches.batch_generate(batch_id=done_batch.pk, chunk_size=5)
    assert (batch.status, batch.created) == (Status.DONE, 23)
    assert _numbers_of(done_batch) == before


def test_generate_batch_task_apply_runs_the_generation(program, staff):
    batch = _queued_batch(program, 9, staff)
    result = generate_batch_task.apply(args=[batch.pk])
    assert result.successful()
    assert result.get() == {"batch": batch.pk, "status": "done", "created": 9}


def test_collisions_are_topped_up_in_the_same_chunk(program, staff, done_batch):
    taken = _numbers_of(done_batch)[:5]
    fresh = numbers.random_numbers(program.card_prefix, program.card_number_length, 1)[0]
    real = numbers.random_numbers
    calls = []

    def colliding(prefix, length, count):
        calls.append(count)
        if len(calls) == 1:  # 5 numbers of another batch and a repeat inside the chunk
            return [*taken, fresh, fresh, *real(prefix, length, count - 7)]
        return real(prefix, length, count)

    batch = _queued_batch(program, 10, staff)
    with mock.patch.object(numbers, "random_numbers", colliding):
        batch = batches.batch_generate(batch_id=batch.pk, chunk_size=10)
    assert calls == [10, 6]  # the COPY fast path hit the unique index; 6 numbers topped up
    got = _numbers_of(batch)
    assert (batch.status, batch.created, len(got), len(set(got))) == (Status.DONE, 10, 10, 10)
    assert not set(got) & set(taken)
    assert fresh in got
    assert Card.objects.filter(number__in=taken, batch=done_batch).count() == 5  # untouched


def test_a_number_space_that_is_full_fails_the_batch_instead_of_looping(program, staff, done_batch):
    taken = _numbers_of(done_batch)
    batch = _queued_batch(program, 3, staff)
    with mock.patch.object(numbers, "random_numbers", lambda p, n, count: taken[:count]):
        batch = batches.batch_generate(batch_id=batch.pk, chunk_size=10)
    assert batch.status == Status.FAILED
    assert "nearly exhausted" in batch.error
    assert batch.created == 0


# --------------------------------------------------------------------------------------------
# Failure, resume, discard


def _events(batch: CardBatch) -> list[tuple[str, object]]:
    return [(e.kind, e.actor) for e in batch.events.order_by("id")]


def test_a_batch_killed_mid_way_is_failed_with_the_committed_chunks_only(failed_batch, staff):
    assert failed_batch.status == Status.FAILED
    assert "worker killed" in failed_batch.error
    assert failed_batch.created == 10 == Card.objects.filter(batch=failed_batch).count()
    assert failed_batch.finished_at is not None
    assert _events(failed_batch) == [("created", staff), ("failed", None)]
    assert "worker killed" in failed_batch.events.get(kind="failed").note


def test_a_complete_batch_has_its_created_and_done_events(done_batch, staff):
    assert _events(done_batch) == [("created", staff), ("done", None)]
    assert done_batch.events.get(kind="created").note == "23 cards"


def test_resume_finishes_a_failed_batch_with_exact_quantity_and_no_duplicate(
    failed_batch, staff, django_capture_on_commit_callbacks
):
    first_chunk = _numbers_of(failed_batch)
    with django_capture_on_commit_callbacks(execute=True):
        batch = batches.batch_resume(batch=failed_batch, actor=staff)
    assert batch.status == Status.PENDING  # as returned: queued; the eager task then ran it
    batch.refresh_from_db()
    got = _numbers_of(batch)
    assert (batch.status, batch.created, batch.error) == (Status.DONE, 35, "")
    assert len(got) == len(set(got)) == 35
    assert got[:10] == first_chunk  # what was committed stays
    assert _events(batch) == [("created", staff), ("failed", None), ("resumed", staff), ("done", None)]
    assert batch.events.get(kind="resumed").note == "was failed (can be resumed or discarded) at 10 of 35 cards"


def test_resume_queues_once_per_call_and_is_idempotent(failed_batch, staff, django_capture_on_commit_callbacks):
    with (
        mock.patch.object(generate_batch_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        batches.batch_resume(batch=failed_batch, actor=staff)
        batches.batch_resume(batch=failed_batch, actor=staff)
    assert delay.call_count == 2
    # Two deliveries of the task: the second finds the batch done and creates nothing.
    generate_batch_task.apply(args=[failed_batch.pk])
    generate_batch_task.apply(args=[failed_batch.pk])
    failed_batch.refresh_from_db()
    assert (failed_batch.status, Card.objects.filter(batch=failed_batch).count()) == (Status.DONE, 35)
    with mock.patch.object(generate_batch_task, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        assert batches.batch_resume(batch=failed_batch, actor=staff).status == Status.DONE
    delay.assert_not_called()


def test_a_running_batch_whose_worker_died_is_stalled_and_can_be_resumed(
    failed_batch, staff, django_capture_on_commit_callbacks
):
    CardBatch.objects.filter(pk=failed_batch.pk).update(status=Status.RUNNING, error="")
    failed_batch.refresh_from_db()
    assert batches.batch_is_stalled(failed_batch)
    assert batches.batch_can_resume(failed_batch)
    with django_capture_on_commit_callbacks(execute=True):
        batches.batch_resume(batch=failed_batch, actor=staff)
    failed_batch.refresh_from_db()
    assert (failed_batch.status, failed_batch.created) == (Status.DONE, 35)


def test_a_batch_with_a_live_worker_is_left_to_it(
    failed_batch, staff, other_session, django_capture_on_commit_callbacks
):
    CardBatch.objects.filter(pk=failed_batch.pk).update(status=Status.RUNNING)
    failed_batch.refresh_from_db()
    other_session.execute("SELECT pg_advisory_lock(%s, %s)", [batches.ADVISORY_NAMESPACE, failed_batch.pk])
    assert batches.batch_worker_alive(batch_id=failed_batch.pk)
    assert not batches.batch_can_resume(failed_batch)
    with mock.patch.object(generate_batch_task, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        assert batches.batch_resume(batch=failed_batch, actor=staff).status == Status.RUNNING
    delay.assert_not_called()
    # A second delivery of the task does nothing while the first worker holds the batch.
    batch = batches.batch_generate(batch_id=failed_batch.pk, chunk_size=10)
    assert (batch.status, Card.objects.filter(batch=batch).count()) == (Status.RUNNING, 10)
    other_session.execute("SELECT pg_advisory_unlock_all()")
    assert batches.batch_is_stalled(failed_batch)


def test_restart_recounts_the_cards_as_the_truth(failed_batch):
    CardBatch.objects.filter(pk=failed_batch.pk).update(created=3)  # a stale counter
    batch = batches.batch_generate(batch_id=failed_batch.pk, chunk_size=100)
    assert (batch.status, batch.created, Card.objects.filter(batch=batch).count()) == (Status.DONE, 35, 35)


def test_discard_voids_the_cards_and_never_reuses_their_numbers(failed_batch, program, staff):
    voided = _numbers_of(failed_batch)
    batch = batches.batch_discard(batch=failed_batch, actor=staff)
    assert batch.status == Status.DISCARDED
    assert list(Card.objects.filter(batch=batch).values_list("status", flat=True).distinct()) == [Card.Status.VOID]
    assert _numbers_of(batch) == voided  # kept, not deleted
    # Generation of the discarded batch does nothing; resuming it is refused.
    assert batches.batch_generate(batch_id=batch.pk).created == 10
    with pytest.raises(errors.BatchStateInvalid):
        batches.batch_resume(batch=batch, actor=staff)
    # A new batch that draws the voided numbers gets other ones.
    real = numbers.random_numbers
    draws = iter([voided[:5]])
    other = _queued_batch(program, 5, staff)
    with mock.patch.object(numbers, "random_numbers", lambda p, n, c: next(draws, None) or real(p, n, c)):
        other = batches.batch_generate(batch_id=other.pk)
    assert other.created == 5
    assert not set(_numbers_of(other)) & set(voided)
    # Idempotent.
    assert batches.batch_discard(batch=batch, actor=staff).status == Status.DISCARDED
    assert _events(batch) == [("created", staff), ("failed", None), ("discarded", staff)]


def test_discard_voids_blocked_stock_and_leaves_assigned_cards_in_one_statement(
    failed_batch, member, staff, django_assert_num_queries
):
    assigned, blocked, *stock = Card.objects.filter(batch=failed_batch).order_by("id")
    services.card_assign(program=failed_batch.program, number=assigned.number, member=member)
    services.card_block(card=blocked, actor=staff)
    with django_assert_num_queries(7):  # savepoint, lock, void + events, batch, batch event, release, reload
        batches.batch_discard(batch=failed_batch, actor=staff)
    statuses = dict(Card.objects.filter(batch=failed_batch).values_list("pk", "status"))
    assert statuses[assigned.pk] == Card.Status.ACTIVE
    assert {statuses[c.pk] for c in [blocked, *stock]} == {Card.Status.VOID}
    voided = CardEvent.objects.filter(card__batch=failed_batch, kind="voided")
    assert sorted(voided.values_list("card_id", flat=True)) == sorted(c.pk for c in [blocked, *stock])
    assert {(e.actor, e.member_id, e.note) for e in voided} == {(staff, None, f"batch {failed_batch.pk} discarded")}
    assert failed_batch.events.get(kind="discarded").note == "was failed (can be resumed or discarded); 9 cards void"
    # A voided stock card cannot be unblocked back into stock.
    with pytest.raises(errors.CardStatusInvalid):
        services.card_unblock(card=blocked)


def test_discard_refuses_a_done_batch(done_batch, staff):
    with pytest.raises(errors.BatchStateInvalid):
        batches.batch_discard(batch=done_batch, actor=staff)
    assert Card.objects.filter(batch=done_batch, status=Card.Status.UNASSIGNED).count() == 23


def test_discard_stops_a_generation_at_its_next_chunk(program, staff):
    batch = _queued_batch(program, 30, staff)
    original_chunk = batches._generate_chunk
    seen = []

    def chunk_then_discard(batch_id, chunk_size, prefetcher):
        more = original_chunk(batch_id, chunk_size, prefetcher)
        seen.append(more)
        if len(seen) == 1:  # staff discards while the worker is between two chunks
            batches.batch_discard(batch=batch, actor=staff)
        return more

    with mock.patch.object(batches, "_generate_chunk", chunk_then_discard):
        result = batches.batch_generate(batch_id=batch.pk, chunk_size=10)
    assert seen == [True, False]
    assert (result.status, result.created) == (Status.DISCARDED, 10)
    assert list(Card.objects.filter(batch=batch).values_list("status", flat=True).distinct()) == [Card.Status.VOID]


# --------------------------------------------------------------------------------------------
# Admin pages


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_create_page_creates_a_batch_and_shows_its_result(
    staff_client, program, staff, django_capture_on_commit_callbacks
):
    url = reverse("admin:cards_cardbatch_add")
    token = _form_token(staff_client, url)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            url, {"program": program.pk, "quantity": 15, "note": "Store 4", "idempotency_key": token}
        )
    batch = CardBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:cards_cardbatch_change", args=[batch.pk])
    assert (batch.status, batch.created, batch.created_by, batch.note) == (Status.DONE, 15, staff, "Store 4")
    page = staff_client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200
    assert "100%" in html
    assert "15 of 15" in html
    assert 'hx-trigger="every 1s"' not in html  # nothing to poll: the batch is complete
    assert reverse("admin:cards_cardbatch_csv", args=[batch.pk]) in html
    # Its history: newest first, who and what.
    assert html.index("batch-event-done") < html.index("batch-event-created")
    assert f"<td>{staff}</td>" in html
    assert "<td>system</td>" in html
    history = staff_client.get(reverse("admin:cards_cardbatch_history", args=[batch.pk]))
    assert history["Location"] == response["Location"] + "#batch-events"


def _form_token(client, url: str) -> str:
    """The hidden idempotency token the page drew for this form."""
    page = client.get(url)
    assert page.status_code == 200
    return re.search(r'name="idempotency_key" value="([^"]+)"', page.content.decode()).group(1)


def test_create_page_submitted_twice_creates_one_batch(staff_client, program, django_capture_on_commit_callbacks):
    url = reverse("admin:cards_cardbatch_add")
    data = {"program": program.pk, "quantity": 7, "note": "", "idempotency_key": _form_token(staff_client, url)}
    with django_capture_on_commit_callbacks(execute=True):
        first = staff_client.post(url, data)
        second = staff_client.post(url, data)

    assert CardBatch.objects.count() == 1
    assert first["Location"] == second["Location"]
    assert Card.objects.count() == 7


def test_create_with_a_repeated_key_returns_the_first_batch_and_refuses_another_request(program, staff):
    first = batches.batch_create(program=program, quantity=3, actor=staff, idempotency_key="admin:card_batch:k")
    again = batches.batch_create(program=program, quantity=3, actor=staff, idempotency_key="admin:card_batch:k")
    assert again.pk == first.pk
    with pytest.raises(IdempotencyConflict):
        batches.batch_create(program=program, quantity=4, actor=staff, idempotency_key="admin:card_batch:k")
    assert CardBatch.objects.count() == 1


def test_create_page_refuses_bad_quantity(staff_client, program):
    response = staff_client.post(reverse("admin:cards_cardbatch_add"), {"program": program.pk, "quantity": 0})
    assert response.status_code == 200
    assert not CardBatch.objects.exists()


def test_batch_pages_need_the_add_permission(client, program, done_batch):
    user = StaffFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_cardbatch"))
    client.force_login(user)
    assert client.get(reverse("admin:cards_cardbatch_changelist")).status_code == 200
    assert client.get(reverse("admin:cards_cardbatch_change", args=[done_batch.pk])).status_code == 200
    assert client.get(reverse("admin:cards_cardbatch_add")).status_code == 403
    assert client.get(reverse("admin:cards_cardbatch_csv", args=[done_batch.pk])).status_code == 403
    assert client.post(reverse("admin:cards_cardbatch_discard", args=[done_batch.pk])).status_code == 403


def test_list_shows_progress_and_status(staff_client, done_batch, failed_batch):
    response = staff_client.get(reverse("admin:cards_cardbatch_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<progress value="28" max="100">' in html  # 10 of 35
    assert "Failed (can be resumed or discarded)" in html


def test_progress_fragment_polls_while_running_and_stops_when_done(staff_client, program, staff, done_batch):
    running = _queued_batch(program, 40, staff)
    url = reverse("admin:cards_cardbatch_progress", args=[running.pk])
    response = staff_client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in response.content.decode()
    response = staff_client.get(
        reverse("admin:cards_cardbatch_progress", args=[done_batch.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 286  # htmx: stop polling
    assert response["HX-Refresh"] == "true"
    assert "hx-trigger" not in response.content.decode()


def test_batch_page_of_a_running_batch_polls_its_progress(staff_client, program, staff):
    batch = _queued_batch(program, 40, staff)
    html = staff_client.get(reverse("admin:cards_cardbatch_change", args=[batch.pk])).content.decode()
    assert "htmx" in html  # {% htmx_script %}
    assert f'hx-get="{reverse("admin:cards_cardbatch_progress", args=[batch.pk])}"' in html


def test_resume_and_discard_buttons_call_the_services(staff_client, failed_batch, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:cards_cardbatch_resume", args=[failed_batch.pk]))
    assert response.status_code == 302
    failed_batch.refresh_from_db()
    assert (failed_batch.status, failed_batch.created) == (Status.DONE, 35)
    response = staff_client.post(reverse("admin:cards_cardbatch_discard", args=[failed_batch.pk]), follow=True)
    assert "cannot be discarded" in response.content.decode()
    assert staff_client.get(reverse("admin:cards_cardbatch_discard", args=[failed_batch.pk])).status_code == 405


def test_discard_action_on_the_list(staff_client, failed_batch):
    response = staff_client.post(
        reverse("admin:cards_cardbatch_changelist"),
        {"action": "discard_batches", "_selected_action": [failed_batch.pk]},
    )
    assert response.status_code == 302
    failed_batch.refresh_from_db()
    assert failed_batch.status == Status.DISCARDED


def test_csv_download_streams_header_and_one_row_per_card_with_pins(staff_client, done_batch, program):
    response = staff_client.get(reverse("admin:cards_cardbatch_csv", args=[done_batch.pk]))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert f"card-batch-{done_batch.pk}.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["number", "pin", "batch", "program"]
    assert len(rows) == 1 + 23
    assert [r[0] for r in rows[1:]] == _numbers_of(done_batch)
    assert all(r[1] == numbers.pin_for(r[0]) and numbers.pin_matches(r[0], r[1]) for r in rows[1:])
    assert {(r[2], r[3]) for r in rows[1:]} == {(str(done_batch.pk), program.name)}


def test_csv_download_of_an_incomplete_batch_is_not_found(staff_client, failed_batch):
    assert staff_client.get(reverse("admin:cards_cardbatch_csv", args=[failed_batch.pk])).status_code == 404
