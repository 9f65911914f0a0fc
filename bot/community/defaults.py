"""Which options an /animate gets for those the member leaves out.

Highest first: what the member gave in the command; their own defaults (``/settings``, the same
in every server); the channel's defaults (``/animate-defaults``, set by its moderators); the
bot's (:mod:`shared.contract`). A member's own choice beats the channel's because it is theirs
and they can see it; the channel's is a moderator's hint for everyone else.
"""

from __future__ import annotations

from bot.i18n import Message, join, say
from bot.jobs import InvalidOptions, JobOptions
from bot.store import OptionDefaults
from shared import contract

PRECEDENCE = say("the option you give, then your /settings, then the channel's defaults, then the bot's")


def choose(prompt: str, given: OptionDefaults, mine: OptionDefaults, channel: OptionDefaults) -> JobOptions:
    """The job's options (InvalidOptions for a prompt or a value the API does not take)."""

    def pick(name: str, bot_default: object) -> object:
        for level in (given, mine, channel):
            value = getattr(level, name)
            if value is not None:
                return value
        return bot_default

    return JobOptions(
        prompt=prompt,
        duration=int(str(pick("duration", contract.DEFAULT_DURATION))),
        aspect_ratio=str(pick("aspect_ratio", contract.DEFAULT_ASPECT_RATIO)),
        motion=str(pick("motion", contract.DEFAULT_MOTION)),
        version=str(pick("version", contract.DEFAULT_VERSION)),
    )


def check(changes: OptionDefaults) -> OptionDefaults:
    """``changes`` if every option set in it is one the API takes, else InvalidOptions."""
    for name, allowed in (
        ("duration", contract.DURATIONS), ("aspect_ratio", contract.ASPECT_RATIOS),
        ("motion", contract.MOTIONS), ("version", contract.VERSIONS),
    ):  # fmt: skip
        value = getattr(changes, name)
        if value is not None and value not in allowed:
            raise InvalidOptions(
                say(
                    "%(option)s %(value)s is not one of %(allowed)s",
                    option=name.replace("_", " "),
                    value=repr(value),
                    allowed=", ".join(map(str, allowed)),
                )
            )
    if changes.empty:
        raise InvalidOptions(say("give at least one option to set"))
    return changes


def describe(defaults: OptionDefaults) -> Message:
    """``5 s · 9:16 · motion high`` for what is set; ``none`` when nothing is."""
    if defaults.empty:
        return say("none")
    return join(
        say("%(seconds)s s", seconds=defaults.duration) if defaults.duration is not None else "",
        defaults.aspect_ratio or "",
        say("motion %(motion)s", motion=defaults.motion) if defaults.motion else "",
        defaults.version or "",
    )
