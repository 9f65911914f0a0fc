"""The command line: ``animate`` and ``check`` without Discord.

``animate`` goes through the same API client and job store as the bot. With no
``DOITONG_API_KEY`` it starts the built-in emulator in-process, so it works on a fresh machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

import httpx

from bot.api.client import (
    APIError,
    APIUnreachableError,
    AuthenticationError,
    DoitongClient,
    DoitongError,
    InsufficientCreditsError,
    RateLimitedError,
)
from bot.config import Settings
from bot.inbound.completion import apply_api_job
from bot.jobs import InvalidOptions, Job, JobOptions, JobState
from bot.media.attachment_url import data_uri
from bot.media.fetch import FetchError, fetch_bytes
from bot.media.image import InvalidImage, check_image_size, validate_image
from bot.pipeline.submission import submit
from bot.services import open_api
from bot.store import NewJob, Store
from shared import contract

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 200 * 1024 * 1024  # a 10 s clip is a few MiB; anything near this is wrong
POLL_FLOOR = 0.5  # seconds; never poll faster than this even with budget to spare
POLL_CEILING = 5.0


class CommandError(Exception):
    """A failure with one line for the user and an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- wiring ----------------------------------------------------------------------------------


# --- animate ---------------------------------------------------------------------------------


def read_image(path: Path) -> tuple[bytes, str]:
    """The file's bytes and MIME type, validated; CommandError (exit 2) with the reason if not."""
    try:
        check_image_size(path.stat().st_size)  # before reading: a 5 GB file is refused unread
        data = path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file", 2) from None
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory, not an image file", 2) from None
    except PermissionError:
        raise CommandError(f"{path}: not readable (permission denied)", 2) from None
    except InvalidImage as exc:
        raise CommandError(f"{path}: {exc}", 2) from None
    try:
        info = validate_image(data)
    except InvalidImage as exc:
        raise CommandError(f"{path}: {exc}", 2) from None
    return data, info.mime


class Progress:
    """One status line, redrawn in place on a terminal, printed on change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""
        self.started = time.monotonic()

    def show(self, text: str) -> None:
        line = f"{text} · {time.monotonic() - self.started:.0f}s"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        elif text != self.last:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last = text

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def animate(settings: Settings, args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    try:
        options = JobOptions(
            prompt=args.prompt,
            duration=args.duration,
            aspect_ratio=args.aspect_ratio,
            motion=args.motion,
            version=args.version,
        )
    except InvalidOptions as exc:
        raise CommandError(str(exc), 2) from None
    image_path: Path = args.image.resolve()
    data, mime = await asyncio.to_thread(read_image, image_path)
    destination: Path = args.out or Path(image_path.stem + ".mp4")

    progress = Progress(sys.stderr)
    async with open_api(settings) as api:
        if api.emulated:
            progress.stream.write(
                "No DOITONG_API_KEY set: using the built-in emulator (a local stand-in that pans and "
                "zooms your image; it is not a model).\n"
            )
        store = await Store.open(settings.database)
        try:
            job = await store.insert_job(
                NewJob(source="cli", image_ref=image_path.as_uri(), options=options, image_origin="file")
            )
            progress.show(f"job {job.id}: submitting ({options.estimated_credits} credits estimated)")
            job = await _submit_or_fail(store, api.client, job, data_uri(data, mime))
            job = await _wait(store, api.client, job, progress, settings)
            progress.done()
            if job.state is not JobState.COMPLETED:
                raise CommandError(f"job {job.id} {job.state}: {job.error}")
            assert job.result_url is not None
            size = await _download(api.client, job.result_url, destination)
            await store.transition(
                job.id, JobState.DELIVERED, expected=JobState.COMPLETED, delivered_at=time.time()
            )
        finally:
            await store.close()
    out.write(
        f"wrote {destination} ({size / 1024:.0f} KiB, {options.duration}s {options.aspect_ratio}, "
        f"motion {options.motion}, {job.actual_credits if job.actual_credits is not None else '?'} credits) "
        f"for job {job.id}\n"
    )
    return 0


async def _submit_or_fail(store: Store, client: DoitongClient, job: Job, image_url: str) -> Job:
    """Submit; on an error the CLI cannot wait out, record it on the job and stop."""
    try:
        job = await submit(store, client, job, image_url=image_url)
    except DoitongError as exc:
        message = describe_api_error(exc, client.base_url)
        await store.transition(job.id, JobState.FAILED, expected=JobState.QUEUED, error=message,
                               completed_at=time.time())  # fmt: skip
        raise CommandError(f"job {job.id} failed: {message}") from None
    if job.state is JobState.FAILED:
        raise CommandError(f"job {job.id} refused by the API: {job.error}")
    return job


async def _wait(store: Store, client: DoitongClient, job: Job, progress: Progress, settings: Settings) -> Job:
    """Poll until the job ends, pacing reads inside the account's rate limit."""
    assert job.api_job_id is not None
    status = "queued"
    while job.state is JobState.PROCESSING:
        delay = min(POLL_CEILING, max(POLL_FLOOR, client.rate_limit.pace(time.time())))
        progress.show(f"job {job.id}: {status}")
        await asyncio.sleep(delay)
        try:
            api_job = await client.get_job(job.api_job_id)
        except (RateLimitedError, APIUnreachableError) as exc:
            progress.show(f"job {job.id}: {status} (API busy: {describe_api_error(exc, client.base_url)})")
            continue
        if api_job is None:
            return await store.transition(
                job.id, JobState.FAILED, expected=JobState.PROCESSING,
                error="the API no longer knows this job", completed_at=time.time(),
            )  # fmt: skip
        status = api_job.status
        job = await apply_api_job(store, job, api_job) or job
    return job


async def _download(client: DoitongClient, url: str, destination: Path) -> int:
    async with httpx.AsyncClient(timeout=60.0, follow_redirects=True) as http:
        try:
            data = await fetch_bytes(http, url, max_bytes=MAX_VIDEO_BYTES)
        except FetchError as exc:
            raise CommandError(f"the video could not be downloaded: {exc}") from None
    await asyncio.to_thread(_write_atomically, destination, data)
    return len(data)


def _write_atomically(destination: Path, data: bytes) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(destination.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(destination)  # never leave a half-written MP4 under the final name


def describe_api_error(exc: DoitongError, base_url: str) -> str:
    """One line a person can act on."""
    if isinstance(exc, AuthenticationError):
        return "the API refused the key (check DOITONG_API_KEY)"
    if isinstance(exc, InsufficientCreditsError):
        return f"not enough credits: needs {exc.credits_required}, the account has {exc.credits_available}"
    if isinstance(exc, RateLimitedError):
        wait = f"; try again in {exc.retry_after:.0f}s" if exc.retry_after is not None else ""
        return f"rate limited by the API ({exc.message}){wait}"
    if isinstance(exc, APIUnreachableError):
        return f"the API at {base_url} is unreachable (check DOITONG_API_URL and the network)"
    if isinstance(exc, APIError):
        return f"the API answered {exc.status} {exc.code or ''}: {exc.message}".replace("  ", " ")
    return str(exc)


# --- check -----------------------------------------------------------------------------------


async def check(settings: Settings, *, out: TextIO = sys.stdout) -> int:
    out.write("configuration: ok\n")
    out.write(f"  database: {settings.database_shown}\n")
    out.write(f"  plan (DOITONG_PLAN): {settings.doitong_plan} ({_plan_text(settings.plan)})\n")
    out.write(f"  discord token: {'set' if settings.discord_token else 'not set (needed to run the bot)'}\n")
    async with open_api(settings) as api:
        where = "built-in emulator (no DOITONG_API_KEY)" if api.emulated else settings.doitong_api_url
        try:
            rate = await api.client.ping()
        except DoitongError as exc:
            raise CommandError(f"API: {describe_api_error(exc, api.client.base_url)}") from None
    out.write(f"API: reachable at {where} over {settings.doitong_transport}\n")
    if rate.limit is None:
        out.write("  the API sent no rate-limit headers\n")
        return 0
    reset = f", window resets in {max(0.0, rate.reset_at - time.time()):.0f}s" if rate.reset_at else ""
    out.write(f"  requests: {rate.remaining} of {rate.limit} left this minute{reset}\n")
    if rate.limit != settings.plan.requests_per_minute:
        out.write(
            f"  warning: the API allows {rate.limit} requests per window but "
            f"DOITONG_PLAN={settings.doitong_plan} expects {settings.plan.requests_per_minute}; "
            "set DOITONG_PLAN to the account's plan\n"
        )
    return 0


def _plan_text(plan: contract.Plan) -> str:
    daily = "unlimited" if plan.jobs_per_day is None else f"{plan.jobs_per_day:,}"
    return f"{plan.requests_per_minute} requests/min, {plan.concurrent_jobs} concurrent, {daily} jobs/day"
