import asyncio
from pathlib import Path

import pytest

from bot.jobs import TRANSITIONS, IllegalTransition, InvalidOptions, JobOptions, JobState
from bot.store import MIGRATIONS, NewJob, Store, Tx, jobs, pools
from bot.store.migrate import schema_version
from testkit.books import ledger_sum


def new(prompt: str = "waves roll in") -> NewJob:
    return NewJob(source="cli", image_ref="file:///tmp/x.png", options=JobOptions(prompt=prompt))


async def test_insert_stores_idempotency_key_before_any_call(store: Store) -> None:
    job = await store.insert_job(new())
    assert job.state is JobState.QUEUED
    assert len(job.idempotency_key) == 36
    again = await store.get_job(job.id)
    assert again == job
    other = await store.insert_job(new())
    assert other.idempotency_key != job.idempotency_key and other.id != job.id


async def test_key_and_rows_survive_reopen(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "a.db")
    job = await s.insert_job(new())
    job = await s.transition(job.id, JobState.SUBMITTING)
    await s.close()
    s = await Store.open(tmp_path / "a.db")
    try:
        again = await s.get_job(job.id)
        assert again is not None and again.idempotency_key == job.idempotency_key
        assert again.state is JobState.SUBMITTING
        assert await s.engine.run(schema_version) == len(MIGRATIONS)
    finally:
        await s.close()


async def test_full_happy_path(store: Store) -> None:
    job = await store.insert_job(new())
    job = await store.transition(job.id, JobState.SUBMITTING)
    job = await store.transition(job.id, JobState.PROCESSING, api_job_id="api-1", submitted_at=1.0)
    job = await store.transition(job.id, JobState.COMPLETED, result_url="http://x/1.mp4", actual_credits=50)
    job = await store.transition(job.id, JobState.DELIVERED, delivered_at=2.0)
    assert (job.api_job_id, job.result_url, job.actual_credits) == ("api-1", "http://x/1.mp4", 50)
    assert (await store.engine.run(lambda tx: jobs.by_api_ids(tx, ["api-1"])))["api-1"] == job


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s in JobState for t in JobState if t not in TRANSITIONS[s]],
)
async def test_every_illegal_transition_raises_and_writes_nothing(
    store: Store, source: JobState, target: JobState
) -> None:
    job = await store.insert_job(new())
    path = {
        JobState.QUEUED: [],
        JobState.SUBMITTING: [JobState.SUBMITTING],
        JobState.PROCESSING: [JobState.SUBMITTING, JobState.PROCESSING],
        JobState.COMPLETED: [JobState.SUBMITTING, JobState.PROCESSING, JobState.COMPLETED],
        JobState.FAILED: [JobState.FAILED],
        JobState.EXPIRED: [JobState.EXPIRED],
        JobState.CANCELLED: [JobState.CANCELLED],
        JobState.DELIVERED: [JobState.FAILED, JobState.DELIVERED],
    }[source]
    for step in path:
        job = await store.transition(job.id, step)
    with pytest.raises(IllegalTransition):
        await store.transition(job.id, target, error="should not be written")
    after = await store.get_job(job.id)
    assert after is not None and after.state is source and after.error is None


async def test_racing_transitions_exactly_one_wins(store: Store) -> None:
    job = await store.insert_job(new())
    await store.transition(job.id, JobState.SUBMITTING)
    await store.transition(job.id, JobState.PROCESSING, api_job_id="api-9")
    results = await asyncio.gather(
        *(
            store.transition(job.id, JobState.COMPLETED, expected=JobState.PROCESSING, result_url=f"u{i}")
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, IllegalTransition) for r in results) == 4


async def test_stale_expected_state_is_refused(store: Store) -> None:
    job = await store.insert_job(new())
    await store.transition(job.id, JobState.CANCELLED)
    with pytest.raises(IllegalTransition):
        await store.transition(job.id, JobState.SUBMITTING, expected=JobState.QUEUED)


async def test_unknown_field_is_refused(store: Store) -> None:
    job = await store.insert_job(new())
    with pytest.raises(ValueError, match="not a transition field"):
        await store.transition(job.id, JobState.SUBMITTING, state="delivered")


async def test_an_error_inside_atomic_undoes_every_write_of_it(store: Store) -> None:
    await store.ensure_guild(7, welcome_credits=100)

    def spend_then_fail(tx: Tx) -> None:
        job = jobs.insert(
            tx, NewJob(source="discord", image_ref="x", options=JobOptions(prompt="p"), guild_id=7), 1.0
        )
        pools.reserve(tx, job, 60)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.atomic(spend_then_fail)
    assert await store.count_in_states(JobState) == 0
    guild = await store.get_guild(7)
    assert guild is not None and guild.balance == 100 == await ledger_sum(store, 7)
    # The connection is usable afterwards: the transaction was closed, not left open.
    assert (await store.insert_job(new())).state is JobState.QUEUED


async def test_a_transaction_that_fails_does_not_undo_another_tasks_write(store: Store) -> None:
    # Tasks share one connection: one task's write must never land inside another task's
    # transaction, where that transaction's rollback would undo it.
    def insert_then_fail(tx: Tx) -> None:
        jobs.insert(tx, new("undone"), 1.0)
        raise RuntimeError("this transaction fails")

    failed, _ = await asyncio.gather(
        store.atomic(insert_then_fail), store.insert_job(new("kept")), return_exceptions=True
    )
    assert isinstance(failed, RuntimeError)
    assert [j.options.prompt for j in await store.jobs_in_states(JobState)] == ["kept"]


async def test_in_flight_listing(store: Store) -> None:
    a = await store.insert_job(new("a"))
    b = await store.insert_job(new("b"))
    await store.transition(b.id, JobState.CANCELLED)
    listed = await store.jobs_in_states([JobState.QUEUED, JobState.PROCESSING])
    assert [j.id for j in listed] == [a.id]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "  "}, "prompt is empty"),
        ({"prompt": "x" * 1001}, "1,001 characters; the limit is 1,000"),
        ({"prompt": "ok", "duration": 7}, "duration 7 is not one of 5, 10"),
        ({"prompt": "ok", "aspect_ratio": "4:3"}, "aspect ratio '4:3'"),
        ({"prompt": "ok", "motion": "extreme"}, "motion 'extreme'"),
        ({"prompt": "ok", "version": "gen-5"}, "version 'gen-5'"),
    ],
)
def test_options_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        JobOptions(**kwargs)  # type: ignore[arg-type]


def test_estimated_credits_follow_price_table() -> None:
    assert JobOptions(prompt="p", version="gen-2").estimated_credits == 10
    assert JobOptions(prompt="p", version="gen-4", duration=10).estimated_credits == 100
    assert JobOptions(prompt="p", version="gen-3", duration=10, motion="high").estimated_credits == 100
