"""/filter: the server's prompt filter (moderators): add, remove, list and test rules."""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands

from bot.community.moderation import ModerationError
from bot.community.prompt_filter import MAX_RULE_CHARS, rule_name
from bot.discord_adapter.client import AnimateBot
from bot.discord_adapter.client import answer_privately as tell
from bot.i18n import render, say
from cogs.moderation import ModeratorGroup
from shared import contract

Interaction = discord.Interaction[AnimateBot]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class FilterGroup(
    ModeratorGroup, name="filter", description="Words and patterns not to animate (moderators)"
):
    @app_commands.command(name="add", description="Refuse prompts with this word (or RE2 pattern)")
    @app_commands.describe(
        kind="word: whole words (case, accents, look-alikes, spacing and repeats seen through); pattern: RE2",
        text="The word, phrase or pattern",
    )
    async def add(
        self, interaction: Interaction, kind: Literal["word", "pattern"],
        text: app_commands.Range[str, 1, MAX_RULE_CHARS],
    ) -> None:  # fmt: skip
        assert interaction.guild_id is not None
        try:
            rule = await self.bot.services.moderation.add_prompt_rule(
                interaction.guild_id, interaction.user.id, kind, text
            )
        except ModerationError as exc:
            await tell(interaction, say("⚠️ Not added: %(reason)s.", reason=exc.text))
            return
        added = (
            say("Rule #%(number)s added: prompts with that word are refused here.", number=str(rule.id))
            if kind == "word"
            else say(
                "Rule #%(number)s added: prompts with that pattern are refused here.", number=str(rule.id)
            )
        )
        await tell(interaction, added)

    @app_commands.command(name="remove", description="Remove a rule by its number (see /filter list)")
    async def remove(self, interaction: Interaction, rule: app_commands.Range[int, 1]) -> None:
        assert interaction.guild_id is not None
        try:
            gone = await self.bot.services.moderation.remove_prompt_rule(
                interaction.guild_id, interaction.user.id, rule
            )
        except ModerationError as exc:
            await tell(interaction, say("⚠️ %(reason)s.", reason=exc.text))
            return
        await tell(interaction, say("Rule #%(number)s removed.", number=str(gone.id)))

    @app_commands.command(name="list", description="This server's rules")
    async def list_rules(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        rules = await self.bot.services.moderation.prompt_rules(interaction.guild_id)
        kinds = {"word": say("word"), "pattern": say("pattern")}
        lines = [
            f"#{r.id} {render(kinds.get(r.kind, r.kind), interaction.locale)}: "
            f"`{discord.utils.escape_markdown(r.text)}`"
            for r in rules
        ]
        none = render(say("No rules here yet (the bot's own list still applies)."), interaction.locale)
        text = "\n".join(lines) if lines else none
        await interaction.response.send_message(text[:1900], ephemeral=True)

    @app_commands.command(name="test", description="Which rule a prompt would break (nothing is started)")
    async def test(
        self, interaction: Interaction, prompt: app_commands.Range[str, 1, contract.MAX_PROMPT_CHARS]
    ) -> None:
        assert interaction.guild_id is not None
        broken = await self.bot.services.moderation.test_prompt(interaction.guild_id, prompt)
        text = (
            say("✅ No rule matches that prompt.")
            if broken is None
            else say("⛔ It breaks %(rule)s.", rule=rule_name(broken))
        )
        await tell(interaction, text)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(FilterGroup(bot))
