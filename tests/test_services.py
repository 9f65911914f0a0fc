"""The composition root: what one process serves at GET /metrics (and /healthz beside it)."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.config import load_settings
from bot.jobs import JobOptions
from bot.services import open_services
from bot.store import NewJob
from testkit.recording_messenger import RecordingMessenger


def sample(text: str, name: str) -> float | None:
    """The value of one sample line (``name`` with its labels) of the exposition text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def test_metrics_show_jobs_by_state_queue_api_budget_and_leader(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATABASE_PATH": str(tmp_path / "jobs.db"), "WEBHOOK_HOST": "127.0.0.1", "WEBHOOK_PORT": "0"}
    )
    async with open_services(settings, RecordingMessenger()) as services:
        assert services.receiver is not None and services.receiver.port
        await services.pipeline.start()  # as the bot does once Discord is ready: it leads (SQLite)
        store = services.pipeline.store  # the CLI's jobs: counted, never picked by the bot's scheduler
        for n in range(3):
            await store.insert_job(
                NewJob(source="cli", image_ref=f"https://cdn.example/{n}.png", options=JobOptions(prompt="x"))
            )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{services.receiver.port}") as http:
            answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert sample(text, 'animate_jobs{state="queued"}') == 3
    assert sample(text, 'animate_jobs{state="processing"}') == 0
    assert sample(text, "animate_queue_depth") == 3
    assert sample(text, "animate_leader") == 1
    assert sample(text, "animate_api_budget_limit") == settings.plan.requests_per_minute
    assert sample(text, "animate_api_requests_total") is not None
    assert sample(text, "animate_api_rate_limited_total") == 0
    # The histograms are there from the start, empty until something is admitted or delivered.
    assert sample(text, "animate_admission_seconds_count") == 0
    assert sample(text, "animate_delivery_seconds_count") == 0
