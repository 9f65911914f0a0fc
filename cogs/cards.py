"""How a job is shown: its status card's embed, its line in /jobs, the answer to a cancel.

Rendering only; the card's buttons and what they do are in cogs/animate.py. A card speaks its
job's language (the locale of the member who asked, stored with the job), whoever redraws it
and whenever; the other answers speak the language of whoever asked for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import discord

from bot.i18n import Message, Text, join, render, say
from bot.jobs import Job, JobState
from bot.pipeline.animations import Animations, Cancelled
from bot.pipeline.delivery import describe
from cogs.checks import is_moderator

STATE_LABELS: dict[JobState, Text] = {
    JobState.QUEUED: say("⏳ Queued"),
    JobState.SUBMITTING: say("📤 Submitting"),
    JobState.PROCESSING: say("🎬 Rendering"),
    JobState.COMPLETED: say("✅ Done, sending…"),
    JobState.FAILED: say("❌ Failed"),
    JobState.CANCELLED: say("🚫 Cancelled"),
    JobState.EXPIRED: say("⌛ Timed out"),
    JobState.DELIVERED: say("✅ Delivered"),
}
# How an ended job's outcome reads (on its card, in /jobs, in its Info).
OUTCOMES: dict[str, Text] = {
    "completed": say("completed"),
    "failed": say("failed"),
    "cancelled": say("cancelled"),
    "expired": say("expired"),
}
STATES: dict[JobState, Text] = {
    JobState.QUEUED: say("queued"),
    JobState.SUBMITTING: say("submitting"),
    JobState.PROCESSING: say("processing"),
    JobState.COMPLETED: say("completed"),
    JobState.FAILED: say("failed"),
    JobState.CANCELLED: say("cancelled"),
    JobState.EXPIRED: say("expired"),
    JobState.DELIVERED: say("delivered"),
}

# A job asked where the bot is not (bot.community.installs): where its result comes, who pays.
USER_INSTALL_NOTE = say(
    "I'm not in this server or group, so your result comes here while this message can still be "
    "updated (15 minutes), then by DM. It counts as your own use, as in DMs: never this server's pool."
)


def standing(job: Job) -> Message:
    """The job's outcome once it ended, else its state, as a word."""
    if job.state is JobState.DELIVERED and job.outcome:
        return OUTCOMES.get(job.outcome, job.outcome)
    return STATES[job.state]


def status_embed(job: Job, detail: Message = "") -> discord.Embed:
    """The card, in its job's language."""
    locale = job.locale
    failed = job.outcome in ("failed", "expired", "cancelled") or job.state in (
        JobState.FAILED,
        JobState.EXPIRED,
        JobState.CANCELLED,
    )
    colour = discord.Colour.red() if failed else discord.Colour.blurple()
    label: Message = STATE_LABELS[job.state]
    if job.state is JobState.DELIVERED and job.outcome != "completed":
        outcome = OUTCOMES.get(job.outcome, job.outcome) if job.outcome else say("ended")
        label = say("❌ %(outcome)s", outcome=render(outcome, locale).capitalize())
    embed = discord.Embed(
        title=render(say("Animation %(job)s", job=job.id), locale),
        colour=colour,
        description=render(describe(job), locale),
    )
    embed.add_field(
        name=render(say("State"), locale), value=render(join(label, detail), locale), inline=False
    )
    if job.error and failed:
        embed.add_field(name=render(say("Why"), locale), value=job.error[:1000], inline=False)
    if job.user_id:
        embed.add_field(name=render(say("Asked by"), locale), value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name=render(say("Started"), locale), value=f"<t:{int(job.created_at)}:R>", inline=True)
    if job.user_install:
        embed.add_field(
            name=render(say("Where the result comes"), locale), value=render(USER_INSTALL_NOTE, locale),
            inline=False,
        )  # fmt: skip
    return embed


def job_line(job: Job, locale: object = None) -> str:
    """One job in /jobs: id, how it stands, when, the prompt, and a link to the video or card."""
    link = ""
    if job.result_url and job.outcome == "completed":
        link = f" · [{render(say('video'), locale)}]({job.result_url})"
    elif job.status_message_id and job.status_channel_id:
        where = job.guild_id or job.asked_in_guild_id or "@me"
        card = render(say("card"), locale)
        link = f" · [{card}](https://discord.com/channels/{where}/{job.status_channel_id}/{job.status_message_id})"
    state = render(standing(job), locale)
    if (job.delivery_note or "").startswith("undeliverable"):  # no route reached them (DMs closed)
        state = render(say("%(state)s, not delivered", state=state), locale)
    return f"`{job.id}` **{state}** · <t:{int(job.created_at)}:R> · {job.options.prompt[:40]}{link}"


def cancel_text(outcome: Cancelled, job: Job | None, job_id: str) -> Message:
    """The private answer to a cancel, by button or by /cancel."""
    shown = job.id if job else job_id
    if outcome is Cancelled.NO_SUCH_JOB:
        return say("There is no job `%(job)s`.", job=job_id)
    if outcome is Cancelled.NOT_YOURS:
        return say("Only the person who asked for this animation (or a moderator) can cancel it.")
    if outcome is Cancelled.BUSY:
        return say("Job `%(job)s` is being sent to the API right now; try again in a few seconds.", job=shown)
    if outcome is Cancelled.ALREADY_ENDED:
        state = STATES[job.state] if job else ""
        return say("Job `%(job)s` already ended (%(state)s); nothing to cancel.", job=shown, state=state)
    return join(
        say("Cancelled job `%(job)s`. It does not count toward your quota.", job=shown),
        _bill(job),
        separator=" ",
    )


def _bill(job: Job | None) -> Text:
    if job is None or job.api_job_id is None:  # never reached the API: nothing is billed
        return say("Nothing is charged.")
    return say(
        "The API had already started it and has no way to stop it: it runs to its end, and what the "
        "API bills for it (about %(credits)s credits) is charged then; the card will say.",
        credits=job.estimated_credits,
    )


async def cancel_reply(animations: Animations, interaction: discord.Interaction[Any], job_id: str) -> Message:
    """Cancel for whoever clicked or typed it (the requester, or a moderator of the job's
    server), and the private answer to give them."""
    user = interaction.user
    moderator_of = interaction.guild_id if is_moderator(interaction) else None
    outcome, job = await animations.cancel(job_id, user.id, moderator_of=moderator_of, by=user.display_name)
    return cancel_text(outcome, job, job_id)


def info_text(job: Job, locale: object = None) -> str:
    """A job's Info, privately: what was asked, what it cost, how long each part took."""
    o = job.options
    lines: list[Message] = [
        say("**Animation `%(job)s`** · %(state)s", job=job.id, state=standing(job)),
        f"> {discord.utils.escape_markdown(o.prompt)[:900]}",
        say(
            "%(duration)s s · %(ratio)s · motion %(motion)s · %(version)s",
            duration=o.duration,
            ratio=o.aspect_ratio,
            motion=o.motion,
            version=o.version,
        ),
        say(
            "Credits: %(estimated)s estimated · %(charged)s",
            estimated=job.estimated_credits,
            charged=_charged(job),
        ),
    ]
    if job.submitted_at is not None:
        lines.append(say("Waited in the queue %(span)s", span=_span(job.submitted_at - job.created_at)))
        if job.completed_at is not None and job.outcome == "completed":
            lines.append(say("Rendered in %(span)s", span=_span(job.completed_at - job.submitted_at)))
    if job.plan:
        plan = job.plan.capitalize()
        if job.plan_why:
            lines.append(
                say("Admitted on the %(plan)s plan (%(why)s)", plan=plan, why=_plan_reason(job.plan_why))
            )
        else:
            lines.append(say("Admitted on the %(plan)s plan", plan=plan))
    lines.append(say("Picture: a link") if job.image_origin == "link" else say("Picture: an attachment"))
    return render(join(*lines, separator="\n"), locale)


def _charged(job: Job) -> Text:
    if job.outcome == "completed":
        return say(
            "%(credits)s charged",
            credits=job.actual_credits if job.actual_credits is not None else job.estimated_credits,
        )
    if job.outcome is None:
        return say("reserved until it ends")
    if job.outcome == "cancelled" and job.api_job_id is not None:
        return say("what the API bills for it (it had started when cancelled)")
    return say("nothing charged (given back)")


def _span(seconds: float) -> timedelta:
    """A duration: the language writes it (12 sec, 12 dtk, 2 min)."""
    return timedelta(seconds=max(0.0, seconds))


def _plan_reason(why: str) -> Message:
    if why.startswith("role "):
        return say("your role %(role)s", role=f"<@&{why.removeprefix('role ')}>")
    reasons = {
        "override": say("set for you by a moderator"),
        "server default": say("this server's default"),
        "bot default": say("the bot's default"),
    }
    return reasons.get(why, why)
