"""The user-install rule: a command the server did not install (or where the bot is not) is the
member's own, paid and counted like a DM, never by that server's pool."""

from __future__ import annotations

import pytest

from bot.community.admission import Policy, QuotaExceeded, admit
from bot.community.installs import Place, place_of
from bot.jobs import JobOptions
from bot.store import NewJob, Store, pools
from testkit.books import ledger_sum

SERVER = 51


def test_a_server_that_installed_the_bot_and_has_it_pays() -> None:
    assert place_of(SERVER, installed_by_guild=SERVER, bot_is_member=True, private_channel=False) == Place(
        SERVER, SERVER, user_install=False
    )


@pytest.mark.parametrize(
    ("installed_by_guild", "bot_is_member"),
    [
        (None, False),  # only the member installed the app; the bot is not in the server
        (None, True),  # the bot is there, but this command came through the member's install
        (SERVER, False),  # the server added the commands without the bot
        (SERVER + 1, True),  # another server's id: not this one's install
    ],
)
def test_anything_short_of_the_servers_install_with_the_bot_there_is_the_members_own(
    installed_by_guild: int | None, bot_is_member: bool
) -> None:
    place = place_of(
        SERVER, installed_by_guild=installed_by_guild, bot_is_member=bot_is_member, private_channel=False
    )
    assert place == Place(None, SERVER, user_install=True)


def test_a_dm_with_the_bot_is_a_dm_and_a_group_dm_is_a_user_install() -> None:
    assert place_of(None, installed_by_guild=None, bot_is_member=False, private_channel=False) == Place(
        None, None, user_install=False
    )
    assert place_of(None, installed_by_guild=None, bot_is_member=False, private_channel=True) == Place(
        None, None, user_install=True
    )


async def test_a_user_installed_job_shares_the_dm_windows_and_no_pool_pays(store: Store) -> None:
    # The server has a pool (an earlier stay of the bot) and would let the member run more: the
    # user-installed job neither spends it nor uses its plan; it counts with the member's DMs.
    await store.ensure_guild(SERVER, 10_000)
    await store.atomic(lambda tx: pools.update(tx, SERVER, default_plan="pro"))
    place = place_of(SERVER, installed_by_guild=None, bot_is_member=False, private_channel=False)

    def job(where: Place | None) -> NewJob:
        return NewJob(
            source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"), user_id=7,
            guild_id=where.guild_id if where else None, channel_id=3,
            user_install=where.user_install if where else False,
            asked_in_guild_id=where.asked_in_guild_id if where else None,
        )  # fmt: skip

    policy = Policy(default_plan="free")  # Free: one at a time
    admitted = await admit(store, job(place), policy)
    assert admitted.plan.plan.name == "free" and admitted.plan.why == "bot default"
    recorded = await store.get_job(admitted.job.id)
    assert recorded is not None and recorded.guild_id is None
    assert recorded.user_install and recorded.asked_in_guild_id == SERVER
    with pytest.raises(QuotaExceeded, match="already have 1 animation running"):
        await admit(store, job(None), policy)  # a DM now: the same window, full
    guild = await store.get_guild(SERVER)
    assert guild is not None and guild.balance == 10_000 == await ledger_sum(store, SERVER)
    assert [row.kind for row in await store.ledger_rows(SERVER)] == ["grant"]  # its welcome, alone
