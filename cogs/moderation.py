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
from cogs.checks import is_moderator, place_here
from shared.contract import PlanName

PlanOrNone = Literal[PlanName, "none"]  # a nested Literal flattens: the plans, then "none"
Interaction = discord.Interaction[AnimateBot]


class NotModerator(app_commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__("Only moderators (Manage Server) can do that; nothing was changed.")


class ModeratorGroup(app_commands.Group):
    """A command group for moderators: every subcommand is checked before it runs, and the
    tree's error handler gives anyone else a private refusal."""

    def __init__(self, bot: AnimateBot) -> None:
        super().__init__()
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage("This works in a server only.")
        if not is_moderator(interaction):
            raise NotModerator
        return True


def summary_text(
    name: str | None, s: MemberSummary, *, in_server: bool = True, windows_day_hours: float = 24
) -> str:
    """A member's plan, usage and credits; ``name`` None addresses the member themself."""
    p = s.plan.plan
    daily = "unlimited" if p.jobs_per_day is None else str(p.jobs_per_day)
    who = "You are" if name is None else f"**{name}** is"
    lines = [
        f"{who} on the **{p.name.capitalize()}** plan ({s.plan.why}).",
        f"Running: {s.active} of {p.concurrent_jobs} · last minute: {s.in_minute} of {p.requests_per_minute}"
        f" · last {windows_day_hours:g} h (rolling): {s.in_day} of {daily}",
        "Counted in this server only."
        if in_server
        else "Counted outside servers only (DMs, your own installs).",
    ]
    if s.blocked:
        lines.append("⛔ Blocked from /animate here.")
    if s.balance is not None:
        lines.append(f"Server pool: {s.balance} credits.")
    if s.allowance is not None:
        lines.append(f"Daily allowance: {s.allowance_left} of {s.allowance} credits left (rolling 24 h).")
    if s.can_spend is not None:
        lines.append(f"Can still spend: **{s.can_spend}** credits.")
    return "\n".join(lines)


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
        await interaction.followup.send(summary_text(target.display_name, s), file=chart, ephemeral=True)

    @app_commands.command(name="set", description="Give a member a plan (beats their roles)")
    async def set_(self, interaction: Interaction, member: discord.Member, plan: PlanOrNone) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_member_plan(
            interaction.guild_id,
            interaction.user.id,
            member.id,
            plan_or_none(plan),
        )
        await interaction.response.send_message(f"{member.mention} is now on: {plan}.", ephemeral=True)

    @app_commands.command(name="role", description="Map a role to a plan (a member's best role wins)")
    async def role(self, interaction: Interaction, role: discord.Role, plan: PlanOrNone) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_role_plan(
            interaction.guild_id,
            interaction.user.id,
            role.id,
            plan_or_none(plan),
        )
        await interaction.response.send_message(f"{role.mention} → {plan}.", ephemeral=True)

    @app_commands.command(name="reset", description="Start a member's minute and day windows afresh")
    async def reset(self, interaction: Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.reset_member(
            interaction.guild_id,
            interaction.user.id,
            member.id,
        )
        await interaction.response.send_message(f"{member.mention}'s windows start afresh.", ephemeral=True)

    @app_commands.command(name="default", description="The plan of members with no role or override")
    async def default(self, interaction: Interaction, plan: PlanName) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_default_plan(interaction.guild_id, interaction.user.id, plan)
        await interaction.response.send_message(f"The server's default plan is now {plan}.", ephemeral=True)

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
        await interaction.response.send_message(f"{member.mention} is blocked from /animate.", ephemeral=True)

    @app_commands.command(name="unblock", description="Let a blocked member use /animate again")
    async def unblock(self, interaction: Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.unblock_member(
            interaction.guild_id,
            interaction.user.id,
            member.id,
        )
        await interaction.response.send_message(f"{member.mention} may use /animate again.", ephemeral=True)

    @app_commands.command(name="audit", description="The latest moderator actions")
    async def audit(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        rows = await self.bot.services.moderation.audit_trail(interaction.guild_id)
        text = "\n".join(
            f"<t:{int(r.created_at)}:R> <@{r.actor_id}> **{r.action}** "
            f"{r.target or ''} {r.detail or ''}".rstrip()
            for r in rows
        )
        await interaction.response.send_message(text or "No moderator actions yet.", ephemeral=True)


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
        word = "allowed" if allowed else "denied"
        await interaction.response.send_message(f"/animate is {word} in {channel.mention}.", ephemeral=True)

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
        said = "arrive as spoilers" if on else "no longer arrive as spoilers"
        await interaction.response.send_message(f"Results in {channel.mention} {said}.", ephemeral=True)

    @app_commands.command(name="age-restricted", description="Results in age-restricted channels as spoilers")
    async def age_restricted(self, interaction: Interaction, spoiler: bool) -> None:
        assert interaction.guild_id is not None
        moderation = self.bot.services.moderation
        await moderation.set_age_restricted_spoiler(interaction.guild_id, interaction.user.id, spoiler)
        said = "arrive as spoilers" if spoiler else "arrive as in any channel"
        await interaction.response.send_message(f"Results in age-restricted channels {said}.", ephemeral=True)


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
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_message(
            f"Added {amount}; the pool has {guild.balance}.", ephemeral=True
        )

    @app_commands.command(name="show", description="Balance and recent movements")
    async def show(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)  # the chart takes a moment
        guild, rows = await self.bot.services.moderation.pool_statement(interaction.guild_id, 12)
        history = "\n".join(
            f"<t:{int(r.created_at)}:R> {r.kind} **{r.amount:+}**"
            + (f" · job `{r.job_id}`" if r.job_id else "")
            + (f" · {r.note}" if r.note else "")
            for r in rows
        )
        extra = []
        if guild.daily_allowance is not None:
            extra.append(f"allowance {guild.daily_allowance}/member/24 h")
        if guild.low_balance_threshold is not None:
            extra.append(f"alert below {guild.low_balance_threshold} in <#{guild.alert_channel_id}>")
        head = f"**Pool: {guild.balance} credits**" + (f" ({'; '.join(extra)})" if extra else "")
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
        await interaction.response.send_message(
            f"Daily allowance: {amount or 'none'} credits per member.", ephemeral=True
        )

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
        await interaction.response.send_message(
            f"{channel.mention} hears once when the pool drops below {threshold}.", ephemeral=True
        )

    @app_commands.command(name="resume", description="Resume submitting after the API account was topped up")
    async def resume(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        was = await self.bot.services.moderation.resume_submitting(interaction.guild_id, interaction.user.id)
        await interaction.response.send_message(
            "Submitting resumed." if was else "Submitting was not paused.", ephemeral=True
        )


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
        await interaction.response.send_message(f"Moderation events go to {channel.mention}.", ephemeral=True)

    @app_commands.command(name="off", description="Stop posting moderation events (the audit keeps them)")
    async def off(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_modlog(interaction.guild_id, interaction.user.id, None)
        await interaction.response.send_message("Moderation events are no longer posted.", ephemeral=True)


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
        text = f"Results with {threshold} ⭐ from members other than their requester go to {channel.mention}."
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="off", description="No more showcase reposts")
    async def off(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.moderation.set_showcase(interaction.guild_id, interaction.user.id, None, 1)
        await interaction.response.send_message("The showcase is off.", ephemeral=True)


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
        text = summary_text(None, s, in_server=guild_id is not None)
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(QuotaGroup(bot))
    bot.tree.add_command(ChannelsGroup(bot))
    bot.tree.add_command(PoolGroup(bot))
    bot.tree.add_command(ModLogGroup(bot))
    bot.tree.add_command(ShowcaseGroup(bot))
    await bot.add_cog(ModerationCog(bot))
