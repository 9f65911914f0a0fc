"""How a job is shown: its status card's embed, its line in /jobs, the answer to a cancel.

Rendering only; the card's buttons and what they do are in cogs/animate.py.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.jobs import Job, JobState
from bot.pipeline.animations import Animations, Cancelled
from bot.pipeline.delivery import describe
from cogs.checks import is_moderator

STATE_LABELS = {
    JobState.QUEUED: "⏳ Queued",
    JobState.SUBMITTING: "📤 Submitting",
    JobState.PROCESSING: "🎬 Rendering",
    JobState.COMPLETED: "✅ Done, sending…",
    JobState.FAILED: "❌ Failed",
    JobState.CANCELLED: "🚫 Cancelled",
    JobState.EXPIRED: "⌛ Timed out",
    JobState.DELIVERED: "✅ Delivered",
}

# A job asked where the bot is not (bot.community.installs): where its result comes, who pays.
USER_INSTALL_NOTE = (
    "I'm not in this server or group, so your result comes here while this message can still be "
    "updated (15 minutes), then by DM. It counts as your own use, as in DMs: never this server's pool."
)


def status_embed(job: Job, detail: str = "") -> discord.Embed:
    failed = job.outcome in ("failed", "expired", "cancelled") or job.state in (
        JobState.FAILED,
        JobState.EXPIRED,
        JobState.CANCELLED,
    )
    colour = discord.Colour.red() if failed else discord.Colour.blurple()
    label = STATE_LABELS[job.state]
    if job.state is JobState.DELIVERED and job.outcome != "completed":
        label = f"❌ {job.outcome.capitalize() if job.outcome else 'Ended'}"
    embed = discord.Embed(title=f"Animation {job.id}", colour=colour, description=describe(job))
    embed.add_field(name="State", value=f"{label}{f' · {detail}' if detail else ''}", inline=False)
    if job.error and failed:
        embed.add_field(name="Why", value=job.error[:1000], inline=False)
    if job.user_id:
        embed.add_field(name="Asked by", value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name="Started", value=f"<t:{int(job.created_at)}:R>", inline=True)
    if job.user_install:
        embed.add_field(name="Where the result comes", value=USER_INSTALL_NOTE, inline=False)
    return embed


def job_line(job: Job) -> str:
    """One job in /jobs: id, how it stands, when, the prompt, and a link to the video or card."""
    link = ""
    if job.result_url and job.outcome == "completed":
        link = f" · [video]({job.result_url})"
    elif job.status_message_id and job.status_channel_id:
        where = job.guild_id or job.asked_in_guild_id or "@me"
        link = (
            f" · [card](https://discord.com/channels/{where}/{job.status_channel_id}/{job.status_message_id})"
        )
    state = job.outcome if job.state is JobState.DELIVERED and job.outcome else job.state.value
    if (job.delivery_note or "").startswith("undeliverable"):  # no route reached them (DMs closed)
        state += ", not delivered"
    return f"`{job.id}` **{state}** · <t:{int(job.created_at)}:R> · {job.options.prompt[:40]}{link}"


def cancel_text(outcome: Cancelled, job: Job | None, job_id: str) -> str:
    """The private answer to a cancel, by button or by /cancel."""
    shown = job.id if job else job_id
    state = job.state if job else ""
    return {
        Cancelled.NO_SUCH_JOB: f"There is no job `{job_id}`.",
        Cancelled.NOT_YOURS: "Only the person who asked for this animation (or a moderator) can cancel it.",
        Cancelled.BUSY: f"Job `{shown}` is being sent to the API right now; try again in a few seconds.",
        Cancelled.ALREADY_ENDED: f"Job `{shown}` already ended ({state}); nothing to cancel.",
        Cancelled.DONE: f"Cancelled job `{shown}`. It does not count toward your quota. " + _bill(job),
    }[outcome]


def _bill(job: Job | None) -> str:
    if job is None or job.api_job_id is None:  # never reached the API: nothing is billed
        return "Nothing is charged."
    return (
        "The API had already started it and has no way to stop it: it runs to its end, and what the "
        f"API bills for it (about {job.estimated_credits} credits) is charged then; the card will say."
    )


async def cancel_reply(animations: Animations, interaction: discord.Interaction[Any], job_id: str) -> str:
    """Cancel for whoever clicked or typed it (the requester, or a moderator of the job's
    server), and the private answer to give them."""
    user = interaction.user
    moderator_of = interaction.guild_id if is_moderator(interaction) else None
    outcome, job = await animations.cancel(job_id, user.id, moderator_of=moderator_of, by=user.display_name)
    return cancel_text(outcome, job, job_id)


def info_text(job: Job) -> str:
    """A job's Info, privately: what was asked, what it cost, how long each part took."""
    o = job.options
    lines = [
        f"**Animation `{job.id}`** · {job.outcome or job.state.value}",
        f"> {discord.utils.escape_markdown(o.prompt)[:900]}",
        f"{o.duration} s · {o.aspect_ratio} · motion {o.motion} · {o.version}",
        f"Credits: {job.estimated_credits} estimated · {_charged(job)}",
    ]
    if job.submitted_at is not None:
        lines.append(f"Waited in the queue {_span(job.submitted_at - job.created_at)}")
        if job.completed_at is not None and job.outcome == "completed":
            lines.append(f"Rendered in {_span(job.completed_at - job.submitted_at)}")
    if job.plan:
        why = f" ({_plan_reason(job.plan_why)})" if job.plan_why else ""
        lines.append(f"Admitted on the {job.plan.capitalize()} plan{why}")
    lines.append(f"Picture: {'a link' if job.image_origin == 'link' else 'an attachment'}")
    return "\n".join(lines)


def _charged(job: Job) -> str:
    if job.outcome == "completed":
        return f"{job.actual_credits if job.actual_credits is not None else job.estimated_credits} charged"
    if job.outcome is None:
        return "reserved until it ends"
    if job.outcome == "cancelled" and job.api_job_id is not None:
        return "what the API bills for it (it had started when cancelled)"
    return "nothing charged (given back)"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _plan_reason(why: str) -> str:
    if why.startswith("role "):
        return f"your role <@&{why.removeprefix('role ')}>"
    return {"override": "set for you by a moderator", "server default": "this server's default",
            "bot default": "the bot's default"}.get(why, why)  # fmt: skip
