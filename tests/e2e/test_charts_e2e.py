"""/pool show and /quota show attach the server's last 30 days as a chart (through the fake)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from testkit.e2e_world import world
from tests.e2e.test_quota_e2e import command, delivery

pytestmark = pytest.mark.timeout(240)


async def test_pool_show_and_quota_show_attach_a_30_day_chart(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        for person in (w.alice, w.alice, w.bob):
            it = await w.animate(person, version="gen-2")
            await it.wait_acknowledged(timeout=3)
        await delivery(w, w.alice, 2)
        for name, options in (("pool show", {}), ("quota show", {"member": w.alice})):
            answer = await command(w, name, **options)
            (chart,) = answer.attachments
            assert chart.filename == "usage-30-days.png"
            with Image.open(io.BytesIO(chart.data)) as image:
                assert image.format == "PNG" and image.width > image.height > 200
        assert "**Pool:" in (await command(w, "pool show")).content  # the numbers stay beside it
