"""A result's buttons through the Discord fake: Delete by the requester, by a moderator, refused
for anyone else, and still working after a restart (the job row stays); Info, privately."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.jobs import JobState
from testkit.e2e_world import World, world
from tests.e2e.test_quota_e2e import command

pytestmark = pytest.mark.timeout(240)


async def result_of(w: World, user: Any) -> Any:
    it = await w.animate(user, version="gen-2")
    await it.wait_acknowledged(timeout=3)
    mention = f"<@{user.id}>"
    return await w.fake.wait_for(
        lambda e: e.kind == "create" and mention in (e.content or "") and bool(e.attachments), timeout=60
    )


def buttons(event: Any) -> list[str]:
    return [c["custom_id"] for row in event.components for c in row["components"]]


async def click(w: World, event: Any, custom_id: str, user: Any) -> str:
    it = await w.fake.click_button(event.message, custom_id, user=user)
    await it.wait_acknowledged(timeout=3)
    (answer,) = await it.wait_for_messages(n=1, timeout=15)
    assert answer.ephemeral
    text: str = answer.content
    return text


async def test_delete_by_the_requester_or_a_moderator_and_no_one_else(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        mine, theirs = await result_of(w, w.alice), await result_of(w, w.bob)
        jobs = {j.user_id: j for j in await w.bot.jobs()}
        alice_job, bob_job = jobs[w.alice.id], jobs[w.bob.id]
        assert buttons(mine) == [
            f"job:again:{alice_job.id}", f"result:remix:{alice_job.id}", f"result:continue:{alice_job.id}",
            f"result:info:{alice_job.id}", f"result:report:{alice_job.id}", f"result:delete:{alice_job.id}",
        ]  # fmt: skip

        assert "Only the person who asked" in await click(w, mine, f"result:delete:{alice_job.id}", w.bob)
        assert not mine.message.deleted
        assert "Deleted" in await click(w, mine, f"result:delete:{alice_job.id}", w.alice)
        assert mine.message.deleted

        await w.bot.stop()  # the button on an old result, after a restart
        await w.bot.start()
        await w.fake.wait_for_ready(timeout=30, count=2)
        assert "Deleted" in await click(w, theirs, f"result:delete:{bob_job.id}", w.mod)
        assert theirs.message.deleted

        assert {j.state for j in await w.bot.jobs()} == {JobState.DELIVERED}  # the rows stay
        audit = (await command(w, "quota audit")).content
        assert audit.count("**result delete**") == 2


async def test_info_tells_anyone_privately_what_was_asked_what_it_cost_and_how_long_it_took(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        result = await result_of(w, w.alice)
        (job,) = await w.bot.jobs()
        text = await click(w, result, f"result:info:{job.id}", w.bob)
        assert f"`{job.id}`" in text and "the sea moves" in text
        assert "5 s · 16:9 · motion medium · gen-2" in text
        assert f"Credits: {job.estimated_credits} estimated · {job.actual_credits} charged" in text
        assert "Waited in the queue" in text and "Rendered in" in text
        assert "Admitted on the Pro plan (the bot's default)" in text


async def test_remix_opens_the_jobs_options_prefilled_and_what_is_submitted_reaches_the_api(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        result = await result_of(w, w.alice)
        (job,) = await w.bot.jobs()
        opened = await w.fake.click_button(result.message, f"result:remix:{job.id}", user=w.alice)
        await opened.wait_acknowledged(timeout=3)
        modal = opened.ack.data
        assert opened.ack.type == 9 and modal["title"] == "Remix"
        shown = {c["component"]["custom_id"]: c["component"] for c in modal["components"]}
        assert shown["prompt"]["value"] == "the sea moves"
        assert [o["value"] for o in shown["version"]["options"] if o.get("default")] == ["gen-2"]

        remix = await w.fake.submit_modal(
            opened, {"prompt": "the sea roars", "duration": "10", "version": "gen-3"}
        )
        await remix.wait_acknowledged(timeout=3)
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 2 and all(j.state is JobState.DELIVERED for j in js)
        )
        new = next(j for j in jobs if j.id != job.id)
        assert (new.options.prompt, new.options.duration, new.options.version) == (
            "the sea roars",
            10,
            "gen-3",
        )
        assert new.options.aspect_ratio == job.options.aspect_ratio  # left as it was
        created = [j.to_api() for j in w.emu.service.jobs.values()]
        assert any(
            c["prompt"] == "the sea roars" and c["duration"] == 10 and c["version"] == "gen-3"
            for c in created
        )


async def test_continue_animates_the_videos_last_frame_with_a_new_prompt(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await result_of(w, w.alice)
        (job,) = await w.bot.jobs()
        opened = await w.fake.click_button(result.message, f"result:continue:{job.id}", user=w.alice)
        await opened.wait_acknowledged(timeout=3)
        assert opened.ack.type == 9 and opened.ack.data["title"] == "Continue"
        following = await w.fake.submit_modal(opened, {"prompt": "the sea calms"})
        await following.wait_acknowledged(timeout=3)
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 2 and all(j.state is JobState.DELIVERED for j in js)
        )
        new = next(j for j in jobs if j.id != job.id)
        assert new.image_origin == "frame" and new.options.prompt == "the sea calms"
        assert new.options.version == job.options.version  # the rest as the first clip had it
        sent = w.emu.service.jobs[new.api_job_id or ""].request.image_ref
        assert sent.startswith("data:image/png;base64,")  # the frame itself, kept by the bot
