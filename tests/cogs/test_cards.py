"""What a member sees of a job: the status card's embed, the /jobs line, the answer to a cancel."""

from __future__ import annotations

from dataclasses import replace

import discord

from bot.i18n import render
from bot.jobs import Job, JobOptions, JobState
from bot.pipeline.animations import Cancelled
from cogs.cards import cancel_text, job_line, status_embed

OPTIONS = JobOptions(prompt="the waves roll in", duration=5, version="gen-4")
JOB = Job(
    id="k3x9q2", idempotency_key="key", state=JobState.QUEUED, source="discord",
    image_ref="https://cdn/x.png", options=OPTIONS, estimated_credits=OPTIONS.estimated_credits,
    created_at=1_700_000_000.0, updated_at=1_700_000_000.0, user_id=42, guild_id=100, channel_id=7,
)  # fmt: skip


def fields(embed: discord.Embed) -> dict[str, str]:
    return {f.name or "": f.value or "" for f in embed.fields}


# --- the status card -------------------------------------------------------------------------


def test_a_delivered_job_that_failed_shows_failed_in_red_with_its_reason() -> None:
    job = replace(JOB, state=JobState.DELIVERED, outcome="failed", error="the picture shows no subject")

    embed = status_embed(job)

    assert embed.colour == discord.Colour.red()
    assert fields(embed)["State"] == "❌ Failed"
    assert fields(embed)["Why"] == "the picture shows no subject"


def test_a_job_that_timed_out_is_red_and_says_why() -> None:
    job = replace(JOB, state=JobState.EXPIRED, outcome="expired", error="no answer in 15 minutes")

    embed = status_embed(job)

    assert embed.colour == discord.Colour.red()
    assert fields(embed)["State"] == "⌛ Timed out"
    assert fields(embed)["Why"] == "no answer in 15 minutes"


def test_a_rendering_job_shows_its_progress_who_asked_and_what_it_costs() -> None:
    job = replace(JOB, state=JobState.PROCESSING, error="a retried hiccup, not a failure")

    embed = status_embed(job, "40%")

    assert embed.colour == discord.Colour.blurple()
    assert embed.title == "Animation k3x9q2"
    assert fields(embed)["State"] == "🎬 Rendering · 40%"
    assert "Why" not in fields(embed)  # an error on a job still running is not shown as its end
    assert fields(embed)["Asked by"] == "<@42>"
    assert fields(embed)["Started"] == "<t:1700000000:R>"
    assert embed.description is not None
    assert "the waves roll in" in embed.description
    assert f"{OPTIONS.estimated_credits} credits" in embed.description


def test_a_delivered_video_is_shown_as_delivered_not_failed() -> None:
    job = replace(JOB, state=JobState.DELIVERED, outcome="completed", actual_credits=40)

    embed = status_embed(job)

    assert embed.colour == discord.Colour.blurple()
    assert fields(embed)["State"] == "✅ Delivered"
    assert embed.description is not None and "40 credits" in embed.description


# --- the /jobs line --------------------------------------------------------------------------


def test_a_completed_jobs_line_links_the_video() -> None:
    job = replace(
        JOB, state=JobState.DELIVERED, outcome="completed", result_url="https://cdn/v.mp4",
        status_channel_id=7, status_message_id=99,
    )  # fmt: skip

    line = job_line(job)

    assert line.startswith("`k3x9q2` **completed** · <t:1700000000:R> · the waves roll in")
    assert line.endswith(" · [video](https://cdn/v.mp4)")
    assert "[card]" not in line


def test_a_job_without_a_video_links_its_card_in_its_server_or_in_direct_messages() -> None:
    queued = replace(JOB, status_channel_id=7, status_message_id=99)
    failed = replace(queued, state=JobState.DELIVERED, outcome="failed", result_url="https://cdn/v.mp4")
    in_dm = replace(queued, guild_id=None)

    assert job_line(queued).endswith("[card](https://discord.com/channels/100/7/99)")
    assert "**queued**" in job_line(queued)
    assert job_line(failed).endswith("[card](https://discord.com/channels/100/7/99)")  # no video to show
    assert "**failed**" in job_line(failed)
    assert job_line(in_dm).endswith("[card](https://discord.com/channels/@me/7/99)")


def test_a_user_installed_job_says_where_its_result_comes_and_links_the_server_it_was_asked_in() -> None:
    asked_away = replace(
        JOB, guild_id=None, user_install=True, asked_in_guild_id=300, status_channel_id=7,
        status_message_id=99,
    )  # fmt: skip

    note = fields(status_embed(asked_away))["Where the result comes"]

    assert "here while this message can still be updated" in note and "then by DM" in note
    assert "never this server's pool" in note
    assert "Where the result comes" not in fields(status_embed(JOB))
    assert job_line(asked_away).endswith("[card](https://discord.com/channels/300/7/99)")


def test_a_result_no_route_reached_says_so_in_the_jobs_line() -> None:
    lost = replace(
        JOB, state=JobState.DELIVERED, outcome="completed", result_url="https://cdn/v.mp4",
        delivery_note="undeliverable: no route reached the requester",
    )  # fmt: skip

    assert "**completed, not delivered**" in job_line(lost)


def test_a_long_prompt_is_cut_in_the_jobs_line() -> None:
    job = replace(JOB, options=JobOptions(prompt="a" * 100))

    assert job_line(job).endswith(" · " + "a" * 40)


# --- the answer to a cancel ------------------------------------------------------------------


def test_each_cancel_answer_names_the_job() -> None:
    cancelled = replace(JOB, state=JobState.CANCELLED)
    ended = replace(JOB, state=JobState.DELIVERED)

    assert render(cancel_text(Cancelled.DONE, replace(cancelled, api_job_id=None), "K3X9Q2")) == (
        "Cancelled job `k3x9q2`. It does not count toward your quota. Nothing is charged."
    )
    at_api = render(cancel_text(Cancelled.DONE, replace(cancelled, api_job_id="abc"), "k3x9q2"))
    assert "runs to its end" in at_api and f"about {JOB.estimated_credits} credits" in at_api
    assert render(cancel_text(Cancelled.NO_SUCH_JOB, None, "zzzz")) == "There is no job `zzzz`."
    assert render(cancel_text(Cancelled.ALREADY_ENDED, ended, "k3x9q2")) == (
        "Job `k3x9q2` already ended (delivered); nothing to cancel."
    )
    assert "`k3x9q2`" in render(cancel_text(Cancelled.BUSY, JOB, "k3x9q2"))
    assert "try again" in render(cancel_text(Cancelled.BUSY, JOB, "k3x9q2"))


def test_someone_elses_job_is_not_cancelled_and_the_answer_says_who_may() -> None:
    text = render(cancel_text(Cancelled.NOT_YOURS, JOB, "k3x9q2"))

    assert "Only the person who asked" in text and "moderator" in text
