"""Every service the bot runs, opened and closed in one place (the composition root).

:func:`open_services` builds them from the settings (store, API client and budget, pipeline,
admission, webhook receiver, relay subscriber) and closes them in the reverse order; the Discord
client is handed the result, as discord.py's ``examples/advanced_startup.py`` hands its client a
database pool. :func:`open_api` is the API as configured: the real one, or the built-in emulator
on loopback when no key is set; this is the one module of the bot that may start the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from bot.api.budget import RequestBudget
from bot.api.client import DoitongClient, RateLimit, RetryPolicy
from bot.community.admission import Policy, QuotaWindows
from bot.community.moderation import Moderation
from bot.community.modlog import ModLog
from bot.community.prompt_filter import PromptFilter, RuleError, read_list
from bot.community.showcase import Showcase, ShowcasePost
from bot.config import ConfigError, Settings
from bot.inbound.receiver import Health, WebhookReceiver
from bot.inbound.relay_subscriber import RelaySubscriber
from bot.jobs import Job, JobState
from bot.media.fetch import load_async_backend
from bot.media.image import load_decoders
from bot.media.link import LinkFetcher
from bot.metrics import Metrics, Snapshot
from bot.pipeline.animations import Animations, Keeping
from bot.pipeline.delivery import Messenger
from bot.pipeline.pipeline import Pipeline, PipelineOptions
from bot.store import PromptRule, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Api:
    client: DoitongClient
    emulated: bool


@contextlib.asynccontextmanager
async def open_api(
    settings: Settings,
    *,
    before_request: Callable[[], Awaitable[None]] | None = None,
    on_rate_limit: Callable[[RateLimit], None] | None = None,
) -> AsyncIterator[Api]:
    """The configured API, or the built-in emulator on loopback when no key is set."""
    retry = RetryPolicy(max_retries=settings.doitong_max_retries)
    if settings.doitong_api_key is not None:
        async with DoitongClient(
            settings.doitong_api_url,
            settings.doitong_api_key.reveal(),
            transport=settings.doitong_transport,
            timeout=settings.doitong_timeout,
            retry=retry,
            before_request=before_request,
            on_rate_limit=on_rate_limit,
        ) as client:
            yield Api(client, emulated=False)
        return
    # Imported here: only the no-key path needs the emulator (and its rendering stack).
    from emulator.config import AccountConfig, EmulatorConfig
    from emulator.server import Emulator

    key = secrets.token_urlsafe(24)  # lives only in this process
    account = AccountConfig(
        key=key,
        plan=settings.doitong_plan,
        credits=100_000,
        # The configured secret, so the bot's own receiver can verify the emulator's webhooks.
        webhook_secret=(
            settings.doitong_webhook_secret.reveal()
            if settings.doitong_webhook_secret
            else secrets.token_urlsafe(24)
        ),
        label="local",
    )
    config = EmulatorConfig(
        host="127.0.0.1", port=0, accounts=[account], time_scale=settings.emulator_time_scale
    )
    async with (
        Emulator(config) as emulator,
        DoitongClient(
            emulator.base_url,
            key,
            transport=settings.doitong_transport,
            timeout=settings.doitong_timeout,
            retry=retry,
            before_request=before_request,
            on_rate_limit=on_rate_limit,
        ) as client,
    ):
        yield Api(client, emulated=True)


def bot_rules(settings: Settings) -> list[PromptRule]:
    """The owner's bot-wide prompt filter (PROMPT_BLOCKLIST_FILE); a bad line is a ConfigError."""
    path = settings.prompt_blocklist_file
    if path is None:
        return []
    try:
        return read_list(path.read_text(encoding="utf-8").splitlines(), f"PROMPT_BLOCKLIST_FILE ({path})")
    except (RuleError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError([str(exc)]) from None


@dataclass(frozen=True, slots=True)
class Services:
    """What the commands and the client reach: the pipeline (to start it once Discord is ready)
    and the services the cogs call."""

    pipeline: Pipeline
    animations: Animations
    moderation: Moderation
    receiver: WebhookReceiver | None  # None with WEBHOOK_PORT=off
    relay: RelaySubscriber | None  # set with RELAY_URL; runs only while this process leads
    showcase: Showcase

    @property
    def store(self) -> Store:
        return self.pipeline.store

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the leader's loops (scheduler, poller, relay) now."""
        return self.pipeline.is_leader

    @property
    def webhooks(self) -> str:
        """How the API's ends arrive, for the start-up log line."""
        if self.pipeline.options.webhook_url is None:
            return "off (polling)"
        return "on, through the relay" if self.relay else "on"


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, messenger: Messenger, *, health: Health | None = None, modlog: ModLog | None = None,
    showcase_poster: ShowcasePost | None = None,
) -> AsyncIterator[Services]:  # fmt: skip
    """Open every service the bot needs; on the way out stop them, jobs resting where they are.

    ``messenger`` is how the pipeline reaches Discord; ``health`` adds the client's state to the
    receiver's ``/healthz``, which also says whether this process leads (``"leader"``). The
    pipeline's loops start later (:meth:`Pipeline.start`), once the client's caches are filled;
    the leader's among them (and the relay subscriber) only while this process is the leader.
    """
    budget = RequestBudget(settings.plan.requests_per_minute, settings.rate_window)
    policy = Policy(
        default_plan=settings.default_user_plan,
        windows=QuotaWindows.scaled(settings.quota_time_scale),
        welcome_credits=settings.pool_welcome_credits,
        plans=settings.plans,
    )
    secret = settings.doitong_webhook_secret
    webhook_url = settings.public_webhook_url if settings.public_webhook_url and secret is not None else None
    async with contextlib.AsyncExitStack() as stack:
        store = await Store.open(settings.database)
        stack.push_async_callback(store.close)
        # SQLite: always the leader. PostgreSQL: one process among those sharing the database.
        leadership = store.leadership(f"{socket.gethostname()}:{os.getpid()}")
        stack.push_async_callback(leadership.close)  # after the pipeline stopped: lock released
        api = await stack.enter_async_context(
            open_api(settings, before_request=budget.acquire, on_rate_limit=budget.observe)
        )
        if api.emulated:
            log.info("no DOITONG_API_KEY: using the built-in emulator (a stand-in, not a model)")
        pipeline = Pipeline(
            store,
            api.client,
            messenger,
            PipelineOptions(
                plan=settings.plan,
                webhook_url=webhook_url,
                rate_window=settings.rate_window,
                job_timeout=settings.job_timeout,
                delivery_workers=settings.delivery_workers,
            ),
            leadership=leadership,
        )
        relay: RelaySubscriber | None = None
        receiver: WebhookReceiver | None = None
        metrics = Metrics()

        def delivered(job: Job) -> None:
            if job.outcome == "completed" and job.completed_at and job.delivered_at:
                metrics.delivery_seconds.observe(max(0.0, job.delivered_at - job.completed_at))

        pipeline.delivery.on_delivered = delivered

        def receiver_health() -> dict[str, object]:
            state = dict(health()) if health else {}
            state["leader"] = pipeline.is_leader
            if relay is not None:
                state["relay"] = relay.connected
            return state

        async def metrics_page() -> bytes:
            shards = (health() if health else {}).get("shard_ids") or ()  # the client's part alone
            return metrics.render(
                Snapshot(
                    jobs_by_state=await store.count_by_state(
                        s for s in JobState if s is not JobState.DELIVERED
                    ),
                    api_requests=api.client.requests_sent,
                    api_rate_limited=api.client.rate_limited,
                    budget_in_use=budget.in_use(),
                    budget_limit=budget.limit,
                    leader=pipeline.is_leader,
                    shards=tuple(int(s) for s in shards) if isinstance(shards, list | tuple) else (),
                )
            )

        # Listening unless WEBHOOK_PORT=off: /healthz serves the container's health check even when
        # webhooks are off (then every POST is refused, having no secret to verify it with).
        if settings.webhook_port is not None:
            receiver = WebhookReceiver(
                secret.reveal().encode() if secret else None,
                pipeline.report,
                health=receiver_health,
                metrics=metrics_page,
            )
            await receiver.start(settings.webhook_host, settings.webhook_port)
            stack.push_async_callback(receiver.stop)
        if api.emulated:
            await pipeline.abandon_in_flight(
                "the built-in emulator restarted with the bot and no longer knows this job; please try again"
            )
        stack.push_async_callback(pipeline.stop)
        if settings.relay_url:
            # The bot connects out to the relay; config.py made sure the token and secret exist.
            assert settings.relay_token is not None and secret is not None
            relay = RelaySubscriber(
                settings.relay_url,
                settings.relay_token.reveal(),
                secret.reveal().encode(),
                pipeline.report,
                on_change=pipeline.poller.set_webhooks,
            )
            pipeline.poller.set_webhooks(False)  # poll at the normal pace until the stream is up
            # One stream per bot: the leader subscribes (pipeline.stop_leading stops it).
            pipeline.while_leading(relay.start, relay.stop)
        links = LinkFetcher(settings.image_url_allowed_networks)
        stack.push_async_callback(links.close)
        prompt_filter = PromptFilter(store, bot_rules(settings))
        keeping = Keeping(int(settings.picture_keep_mb * 1024 * 1024), settings.picture_keep_hours * 3600)
        # What the first /animate would load (the first picture download's and decode's lazy
        # imports), loaded now: in a burst it held up the acknowledgements (bench/bench_ack.py).
        load_async_backend()
        await asyncio.to_thread(load_decoders)
        yield Services(
            pipeline=pipeline,
            animations=Animations(
                store,
                pipeline,
                policy,
                metrics=metrics,
                links=links,
                prompt_filter=prompt_filter,
                keeping=keeping,
                modlog=modlog,
            ),
            moderation=Moderation(store, policy, pipeline.scheduler, prompt_filter, modlog),
            receiver=receiver,
            relay=relay,
            showcase=Showcase(store, showcase_poster),
        )
