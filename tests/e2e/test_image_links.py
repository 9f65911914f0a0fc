"""/animate image_url: through the Discord fake, the real bot and the emulator.

testkit.web on 127.0.0.2 stands for a public image host (the bot is told to allow that one
address); the Discord fake and the emulator on 127.0.0.1 stand for the host's own network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import JobState
from bot.store import Store
from testkit.e2e_world import PNG, World, world
from testkit.web import ALLOW, PublicWeb

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def web() -> AsyncIterator[PublicWeb]:
    async with PublicWeb() as server:
        yield server


async def animate_link(w: World, link: str | None, *, attach: bool = False) -> Any:
    options = {"prompt": "the sea moves", "version": "gen-2"} | ({"image_url": link} if link else {})
    attachments = {"image": (PNG, "pic.png", "image/png")} if attach else None
    return await w.fake.invoke_slash(
        "animate", user=w.alice, guild=w.guild, channel=w.channel, options=options, attachments=attachments
    )


async def balance(w: World) -> int | None:
    store = await Store.open(w.bot.db)
    try:
        guild = await store.get_guild(w.guild.id)
        return None if guild is None else guild.balance
    finally:
        await store.close()


async def private_reply(w: World, it: Any) -> str:
    await it.wait_acknowledged(timeout=3)
    reply = await w.fake.wait_for(lambda e: e.interaction_id == it.id and e.ephemeral, timeout=30)
    assert it.original_message is None or it.original_message.deleted  # the public "thinking" is gone
    text: str = reply.content
    return text


async def test_a_public_link_is_animated_and_animate_again_fetches_it_the_same_way(
    tmp_path: Path, web: PublicWeb
) -> None:
    async with world(tmp_path, extra={"IMAGE_URL_ALLOWED_NETWORKS": ALLOW}) as w:
        it = await animate_link(w, web.url("/cat.png"))
        await it.wait_acknowledged(timeout=3)
        mention = f"<@{w.alice.id}>"
        await w.fake.wait_for(lambda e: e.kind == "create" and mention in (e.content or ""), timeout=60)
        (job,) = await w.bot.wait_jobs(lambda js: bool(js) and js[0].state is JobState.DELIVERED)
        assert job.image_ref == web.url("/cat.png") and job.image_origin == "link"
        card = await w.fake.wait_for(lambda e: e.interaction_id == it.id and bool(e.embeds), timeout=15)
        again = await w.fake.click_button(card.message, f"job:again:{job.id}", user=w.alice)
        await again.wait_acknowledged(timeout=3)
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 2 and all(j.state is JobState.DELIVERED for j in js)
        )
        assert {j.image_origin for j in jobs} == {"link"}
        assert [s.path for s in web.served].count("/cat.png") >= 2  # the bot read it each time


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("fake", "private or local address"),  # the Discord fake's own port on 127.0.0.1
        ("metadata", "private or local address"),
        ("redirect", "private or local address"),
        ("/huge.png", "larger than"),
        ("/page.png", "not an image"),
        ("/nothing.png", "HTTP 404"),
    ],
)
async def test_bad_links_are_refused_privately_and_change_nothing(
    tmp_path: Path, web: PublicWeb, path: str, says: str
) -> None:
    async with world(tmp_path, extra={"IMAGE_URL_ALLOWED_NETWORKS": ALLOW}) as w:
        private = f"{w.fake.api_base.split('/api')[0]}/attachments/1/2/pic.png"
        link = {
            "fake": private,
            "metadata": "http://169.254.169.254/latest/meta-data/iam/",
            "redirect": web.url(f"/to?url={private}"),
        }.get(path, web.url(path))
        text = await private_reply(w, await animate_link(w, link))
        assert says in text and "Can't animate" in text
        assert await w.bot.jobs() == []
        assert w.api_stats()["requests"] == 0
        assert await balance(w) in (None, 500)  # nothing reserved from the pool (500: its welcome)


@pytest.mark.parametrize("both", [True, False], ids=["both", "neither"])
async def test_the_picture_is_given_exactly_one_way(tmp_path: Path, both: bool) -> None:
    async with world(tmp_path) as w:
        it = await animate_link(w, "https://example.com/cat.png" if both else None, attach=both)
        text = await private_reply(w, it)
        assert "attach it as `image`, or link it as `image_url`" in text
        assert await w.bot.jobs() == []
