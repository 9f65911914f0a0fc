"""/quota, /animate-channels, /pool and /credits: moderators' controls and a member's view."""

from __future__ import annotations

import asyncio
import io
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.community.moderation import MemberSummary, ModerationError
from bot.discord_adapter.client import AnimateBot
from bot.discord_adapter.client import answer_privately as tell
from bot.i18n import Message, join, number, render, say
from cogs.checks import is_moderator, place_here
from shared.contract import PlanName

PlanOrNone = Literal[PlanName, "none"]  # a nested Literal flattens: the plans, then "none"
Interaction = discord.Interaction[AnimateBot]


class NotModerator(app_commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__("Only moderators (Manage Server) can do that; nothing was changed.")
        self.text = say("Only moderators (Manage Server) can do that; nothing was changed.")


class ServerOnly(app_commands.NoPrivateMessage):
    def __init__(self) -> None:
        super().__init__("This works in a server only.")
        self.text = say("This works in a server only.")


class ModeratorGroup(app_commands.Group):
    """A command group for moderators: every subcommand is checked before it runs, and the
    tree's error handler gives anyone else a private refusal."""

    def __init__(self, bot: AnimateBot) -> None:
        super().__init__()
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.guild_id is None:
            raise ServerOnly
        if not is_moderator(interaction):
            raise NotModerator
        return True


def plan_why(why: str) -> Message:
    """Why a plan applies, as /credits and /quota show it."""
    if why.startswith("role "):
        return say("role %(role)s", role=why.removeprefix("role "))
    reasons = {
        "override": say("override"),
        "server default": say("server default"),
        "bot default": say("bot default"),
    }
    return reasons.get(why, why)


def summary_text(
    name: str | None, s: MemberSummary, *, in_server: bool = True, windows_day_hours: float = 24,
    locale: object = None,
) -> str:  # fmt: skip
    """A member's plan, usage and credits; ``name`` None addresses the member themself."""
    p = s.plan.plan
    daily: object = say("unlimited") if p.jobs_per_day is None else p.jobs_per_day
    plan, why = p.name.capitalize(), plan_why(s.plan.why)
    lines: list[Message] = [
        say("You are on the **%(plan)s** plan (%(why)s).", plan=plan, why=why)
        if name is None
        else say("**%(name)s** is on the **%(plan)s** plan (%(why)s).", name=name, plan=plan, why=why),
        say(
            "Running: %(active)s of %(concurrent)s · last minute: %(minute)s of %(per_minute)s"
            " · last %(hours)s h (rolling): %(day)s of %(daily)s",
            active=s.active, concurrent=p.concurrent_jobs, minute=s.in_minute,
            per_minute=p.requests_per_minute, hours=windows_day_hours, day=s.in_day, daily=daily,
        ),
        say("Counted in this server only.")
        if in_server
        else say("Counted outside servers only (DMs, your own installs)."),
    ]  # fmt: skip
    if s.blocked:
        lines.append(say("⛔ Blocked from /animate here."))
    if s.balance is not None:
        lines.append(say("Server pool: %(balance)s credits.", balance=s.balance))
    if s.allowance is not None:
        lines.append(
            say(
                "Daily allowance: %(left)s of %(allowance)s credits left (rolling 24 h).",
                left=s.allowance_left,
                allowance=s.allowance,
            )
        )
    if s.can_spend is not None:
        lines.append(say("Can still spend: **%(credits)s** credits.", credits=s.can_spend))
    return render(join(*lines, separator="\n"), locale)


async def usage_chart_file(bot: AnimateBot, interaction: Interaction) -> discord.File:
    """The server's last 30 days as a chart: credits spent per day, jobs per member (top ten)."""
    assert interaction.guild_id is not None
    usage = await bot.services.moderation.recent_usage(interaction.guild_id)
    guild = interaction.guild

    def name(user_id: int) -> str:
        member = guild.get_member(user_id) if guild is not None else None
        return member.display_name if member is not None else f"member {user_id}"

    # matplotlib is loaded on the first chart, not with the bot: most processes never draw one.
    from bot.media.charts import usage_chart

    named = [(name(user_id), jobs) for user_id, jobs in usage.per_member]
    png = await asyncio.to_thread(usage_chart, usage.per_day, named)
    return discord.File(io.BytesIO(png), "usage-30-days.png")


def plan_or_none(plan: str) -> str | None:
    return None if plan == "none" else plan


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class QuotaGroup(ModeratorGroup, name="quota", description="Per-member limits (moderators)"):
    @app_commands.command(name="show", description="A member's plan, usage and credits")
    async def show(self, interaction: Interaction, member: discord.Member | None = None) -> None:
        target = member or interaction.user
        assert interaction.guild_id is not None and isinstance(target, discord.Member)
        await interaction.response.defer(ephemeral=True, thinking=True)  # the chart takes a moment
        s = await self.bot.services.moderation.member_summary(
            interaction.guild_id,
            target.id,
            [r.id for r in target.roles],
        )
        chart = await usage_chart_file(self.bot, interaction)
        text = summary_text(target.display_name, s, locale=interaction.locale)
        await interaction.followup.send(text, file=chart, ephemeral=True)

    @app_commands.command(name="set", description="Give a member a plan (beats their roles)")
    async def set_(self, interaction: Interaction, member: discord.Member, plan: PlanOrNone) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_member_plan(
            interaction.guild_id,
            interaction.user.id,
            member.id,
            plan_or_none(plan),
        )
        await tell(interaction, say("%(member)s is now on: %(plan)s.", member=member.mention, plan=plan))

    @app_commands.command(name="role", description="Map a role to a plan (a member's best role wins)")
    async def role(self, interaction: Interaction, role: discord.Role, plan: PlanOrNone) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_role_plan(
            interaction.guild_id,
            interaction.user.id,
            role.id,
            plan_or_none(plan),
        )
        await tell(interaction, f"{role.mention} → {plan}.")

    @app_commands.command(name="reset", description="Start a member's minute and day windows afresh")
    async def reset(self, interaction: Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.reset_member(
            interaction.guild_id,
            interaction.user.id,
            member.id,
        )
        await tell(interaction, say("%(member)s's windows start afresh.", member=member.mention))

    @app_commands.command(name="default", description="The plan of members with no role or override")
    async def default(self, interaction: Interaction, plan: PlanName) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_default_plan(interaction.guild_id, interaction.user.id, plan)
        await tell(interaction, say("The server's default plan is now %(plan)s.", plan=plan))

    @app_commands.command(name="block", description="Stop a member from using /animate here")
    async def block(
        self, interaction: Interaction, member: discord.Member, reason: str | None = None
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.block_member(
            interaction.guild_id,
            interaction.user.id,
            member.id,
            reason,
        )
        await tell(interaction, say("%(member)s is blocked from /animate.", member=member.mention))

    @app_commands.command(name="unblock", description="Let a blocked member use /animate again")
    async def unblock(self, interaction: Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.unblock_member(
            interaction.guild_id,
            interaction.user.id,
            member.id,
        )
        await tell(interaction, say("%(member)s may use /animate again.", member=member.mention))

    @app_commands.command(name="audit", description="The latest moderator actions")
    async def audit(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        rows = await self.bot.services.moderation.audit_trail(interaction.guild_id)
        text = "\n".join(
            f"<t:{int(r.created_at)}:R> <@{r.actor_id}> **{r.action}** "
            f"{r.target or ''} {r.detail or ''}".rstrip()
            for r in rows
        )
        await tell(interaction, text or say("No moderator actions yet."))


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ChannelsGroup(ModeratorGroup, name="animate-channels", description="Where /animate may run"):
    async def _set(self, interaction: Interaction, channel: discord.TextChannel, allowed: bool) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_channel(
            interaction.guild_id,
            interaction.user.id,
            channel.id,
            allowed,
        )
        said = (
            say("/animate is allowed in %(channel)s.", channel=channel.mention)
            if allowed
            else say("/animate is denied in %(channel)s.", channel=channel.mention)
        )
        await tell(interaction, said)

    @app_commands.command(name="allow", description="Allow /animate here (once any is allowed, only those)")
    async def allow(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        await self._set(interaction, channel, True)

    @app_commands.command(name="deny", description="Refuse /animate in this channel")
    async def deny(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        await self._set(interaction, channel, False)

    @app_commands.command(name="spoiler", description="Results in this channel arrive as spoilers (or not)")
    async def spoiler(self, interaction: Interaction, channel: discord.TextChannel, on: bool) -> None:
        assert interaction.guild_id is not None
        moderation = self.bot.services.moderation
        await moderation.set_spoiler(interaction.guild_id, interaction.user.id, channel.id, on)
        said = (
            say("Results in %(channel)s arrive as spoilers.", channel=channel.mention)
            if on
            else say("Results in %(channel)s no longer arrive as spoilers.", channel=channel.mention)
        )
        await tell(interaction, said)

    @app_commands.command(name="age-restricted", description="Results in age-restricted channels as spoilers")
    async def age_restricted(self, interaction: Interaction, spoiler: bool) -> None:
        assert interaction.guild_id is not None
        moderation = self.bot.services.moderation
        await moderation.set_age_restricted_spoiler(interaction.guild_id, interaction.user.id, spoiler)
        said = (
            say("Results in age-restricted channels arrive as spoilers.")
            if spoiler
            else say("Results in age-restricted channels arrive as in any channel.")
        )
        await tell(interaction, said)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class PoolGroup(ModeratorGroup, name="pool", description="The server's shared credit pool (admins)"):
    @app_commands.command(name="topup", description="Add credits to the pool")
    async def topup(self, interaction: Interaction, amount: app_commands.Range[int, 1, 10_000_000]) -> None:
        assert interaction.guild_id is not None
        try:
            guild = await self.bot.services.moderation.topup(
                interaction.guild_id,
                interaction.user.id,
                amount,
            )
        except ModerationError as exc:
            await tell(interaction, exc.text)
            return
        await tell(
            interaction,
            say("Added %(amount)s; the pool has %(balance)s.", amount=amount, balance=guild.balance),
        )

    @app_commands.command(name="show", description="Balance and recent movements")
    async def show(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)  # the chart takes a moment
        guild, rows = await self.bot.services.moderation.pool_statement(interaction.guild_id, 12)
        locale = interaction.locale
        job = render(say("job"), locale)
        history = "\n".join(
            f"<t:{int(r.created_at)}:R> {r.kind} **{number(r.amount, locale, signed=True)}**"
            + (f" · {job} `{r.job_id}`" if r.job_id else "")
            + (f" · {r.note}" if r.note else "")
            for r in rows
        )
        extra: list[Message] = []
        if guild.daily_allowance is not None:
            extra.append(say("allowance %(amount)s/member/24 h", amount=guild.daily_allowance))
        if guild.low_balance_threshold is not None:
            extra.append(
                say(
                    "alert below %(line)s in %(channel)s",
                    line=guild.low_balance_threshold,
                    channel=f"<#{guild.alert_channel_id}>",
                )
            )
        head = render(say("**Pool: %(balance)s credits**", balance=guild.balance), locale)
        if extra:
            head += f" ({render(join(*extra, separator='; '), locale)})"
        chart = await usage_chart_file(self.bot, interaction)
        await interaction.followup.send(f"{head}\n{history}", file=chart, ephemeral=True)

    @app_commands.command(name="allowance", description="Credits each member may spend per 24 h (0 = no cap)")
    async def allowance(
        self, interaction: Interaction, amount: app_commands.Range[int, 0, 10_000_000]
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_allowance(
            interaction.guild_id,
            interaction.user.id,
            amount,
        )
        each: object = amount or say("none")
        await tell(interaction, say("Daily allowance: %(amount)s credits per member.", amount=each))

    @app_commands.command(name="alert", description="Warn a channel once when the pool drops below a line")
    async def alert(
        self, interaction: Interaction, threshold: app_commands.Range[int, 0, 10_000_000],
        channel: discord.TextChannel,
    ) -> None:  # fmt: skip
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_alert(
            interaction.guild_id,
            interaction.user.id,
            threshold,
            channel.id,
        )
        await tell(
            interaction,
            say(
                "%(channel)s hears once when the pool drops below %(threshold)s.",
                channel=channel.mention,
                threshold=threshold,
            ),
        )

    @app_commands.command(name="resume", description="Resume submitting after the API account was topped up")
    async def resume(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        was = await self.bot.services.moderation.resume_submitting(interaction.guild_id, interaction.user.id)
        await tell(interaction, say("Submitting resumed.") if was else say("Submitting was not paused."))


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ModLogGroup(
    ModeratorGroup, name="modlog", description="Where moderation events are posted (moderators)"
):
    @app_commands.command(
        name="channel", description="Post refused prompts, deletions, blocks and changes here"
    )
    async def channel(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_modlog(interaction.guild_id, interaction.user.id, channel.id)
        await tell(interaction, say("Moderation events go to %(channel)s.", channel=channel.mention))

    @app_commands.command(name="off", description="Stop posting moderation events (the audit keeps them)")
    async def off(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_modlog(interaction.guild_id, interaction.user.id, None)
        await tell(interaction, say("Moderation events are no longer posted."))


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ShowcaseGroup(ModeratorGroup, name="showcase", description="Repost results members star (mods)"):
    @app_commands.command(name="channel", description="Repost a result here once it has this many ⭐")
    async def channel(
        self,
        interaction: Interaction,
        channel: discord.TextChannel,
        threshold: app_commands.Range[int, 1, 100],
    ) -> None:
        assert interaction.guild_id is not None
        moderation = self.bot.services.moderation
        await moderation.set_showcase(interaction.guild_id, interaction.user.id, channel.id, threshold)
        text = say(
            "Results with %(threshold)s ⭐ from members other than their requester go to %(channel)s.",
            threshold=threshold,
            channel=channel.mention,
        )
        await tell(interaction, text)

    @app_commands.command(name="off", description="No more showcase reposts")
    async def off(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_showcase(interaction.guild_id, interaction.user.id, None, 1)
        await tell(interaction, say("The showcase is off."))


class ModerationCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="credits", description="Your plan, usage and what you can still spend today")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def credits(self, interaction: Interaction) -> None:
        user = interaction.user
        guild_id = place_here(interaction).guild_id  # where the bot is not: the member's own, as in DMs
        roles = [r.id for r in user.roles] if isinstance(user, discord.Member) and guild_id else []
        s = await self.bot.services.moderation.member_summary(guild_id, user.id, roles)
        text = summary_text(None, s, in_server=guild_id is not None, locale=interaction.locale)
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(QuotaGroup(bot))
    bot.tree.add_command(ChannelsGroup(bot))
    bot.tree.add_command(PoolGroup(bot))
    bot.tree.add_command(ModLogGroup(bot))
    bot.tree.add_command(ShowcaseGroup(bot))
    await bot.add_cog(ModerationCog(bot))
