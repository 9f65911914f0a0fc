"""Apps ▸ "Animate this image" through the Discord fake: on a message with an attachment, with a
link preview's image (testkit.web stands for the public host), and with no picture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs import JobState
from testkit.e2e_world import PNG, world
from testkit.web import ALLOW, PublicWeb

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def web() -> AsyncIterator[PublicWeb]:
    async with PublicWeb() as server:
        yield server


async def test_animate_this_image_from_an_attachment_a_link_preview_and_nothing(
    tmp_path: Path, web: PublicWeb
) -> None:
    async with world(tmp_path, extra={"IMAGE_URL_ALLOWED_NETWORKS": ALLOW}) as w:
        posts = {
            "attachment": w.fake.post_as(w.bob, w.channel, "look", files=[(PNG, "harbour.png", "image/png")]),
            "preview": w.fake.post_as(
                w.bob,
                w.channel,
                web.url("/cat.png"),
                embeds=[{"type": "image", "image": {"url": web.url("/cat.png")}}],
            ),
            "nothing": w.fake.post_as(w.bob, w.channel, "just words"),
        }
        nothing = await w.fake.invoke_message_command("Animate this image", posts["nothing"], user=w.alice)
        (said,) = await nothing.wait_for_messages(n=1, timeout=15)
        assert said.ephemeral and "no picture to animate" in said.content

        for n, kind in enumerate(("attachment", "preview"), start=1):
            opened = await w.fake.invoke_message_command("Animate this image", posts[kind], user=w.alice)
            await opened.wait_acknowledged(timeout=3)
            assert opened.ack.type == 9 and opened.ack.data["title"] == "Animate this image"
            submitted = await w.fake.submit_modal(opened, {"prompt": f"the {kind} moves", "version": "gen-2"})
            await submitted.wait_acknowledged(timeout=3)
            jobs = await w.bot.wait_jobs(
                lambda js, n=n: len(js) == n and all(j.state is JobState.DELIVERED for j in js)
            )
        by_prompt = {j.options.prompt: j for j in jobs}
        from_file, from_link = by_prompt["the attachment moves"], by_prompt["the preview moves"]
        assert from_file.image_origin == "attachment" and from_link.image_origin == "link"
        assert from_link.image_ref == web.url("/cat.png")
        assert (
            from_file.options.version == "gen-2" and from_file.options.duration == 5
        )  # left empty: defaults
