"""Command line of the emulator: ``configure_parser`` adds its options to a parser,
``main`` runs the server until SIGINT or SIGTERM.

    animate-emulator --api-key KEY --plan pro --time-scale 0.1     (or python -m emulator)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from emulator.config import AccountConfig, EmulatorConfig
from emulator.faults import FAULT_NAMES
from emulator.server import Emulator
from shared import contract
from shared.signals import stop_requested

log = logging.getLogger(__name__)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a probability between 0 and 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``p``."""
    p.description = (
        "Run a local stand-in for the Doitong Runway image-to-video API. It is not a model: "
        "it pans and zooms the input image into a real H.264 MP4."
    )
    srv = p.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    srv.add_argument("--port", type=int, default=8787, help="port (0 = any free port; default %(default)s)")
    srv.add_argument("--public-url", help="base of output URLs (default http://HOST:PORT)")
    srv.add_argument("--output-dir", type=Path, help="where MP4s go (default: a temporary directory)")
    srv.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="level of the emulator's log lines on stderr (default info)",
    )

    acc = p.add_argument_group("accounts")
    acc.add_argument("--api-key", help="the API key clients must send")
    acc.add_argument(
        "--label", default="main", help="name of that key in /_emulator/state (default %(default)s)"
    )
    acc.add_argument("--plan", choices=contract.PLAN_NAMES, default="pro", help="default %(default)s")
    acc.add_argument("--credits", type=int, default=100_000, help="starting balance (default %(default)s)")
    acc.add_argument("--webhook-secret", default="", help="key of the webhook signatures (HMAC-SHA256)")
    acc.add_argument(
        "--keys-file",
        type=Path,
        help="JSON list of accounts {key, plan, credits, webhook_secret, label, requests_per_minute, "
        "concurrent_jobs, jobs_per_day}; with or instead of --api-key",
    )
    acc.add_argument("--rpm", type=int, help="requests per minute (overrides the plan)")
    acc.add_argument("--concurrency", type=int, help="concurrent jobs (overrides the plan)")
    acc.add_argument("--daily", type=int, help="jobs per rolling day (overrides the plan)")

    beh = p.add_argument_group("behaviour")
    beh.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="multiplies every emulated duration (queueing, processing, rate windows, the day, webhook "
        "backoff); 0.01 runs 100x faster (default %(default)s)",
    )
    beh.add_argument("--fps", type=int, default=24, help="frames per second (default %(default)s)")
    beh.add_argument("--video-height", type=int, default=480, help="short side in px (default %(default)s)")
    beh.add_argument("--crf", type=int, default=23, help="x264 quality, 0-51 (default %(default)s)")
    beh.add_argument("--queue-seconds", type=float, default=2.0, help="time queued (default %(default)s)")
    beh.add_argument(
        "--processing-seconds",
        type=float,
        default=15.0,
        help="processing time per 5 s of video (default %(default)s)",
    )
    beh.add_argument("--render-workers", type=int, default=2, help="renders at once (default %(default)s)")
    beh.add_argument(
        "--render-cache-mb", type=float, default=256.0,
        help="finished renders kept for identical requests, least recently used out first; 0 keeps"
        " only the last (default %(default)s)",
    )  # fmt: skip
    beh.add_argument(
        "--webhook-attempts", type=int, default=6, help="delivery attempts (default %(default)s)"
    )

    flt = p.add_argument_group(
        "faults", f"queued at run time via POST /_emulator/faults: {', '.join(FAULT_NAMES)}"
    )
    flt.add_argument("--error-rate", type=_probability, default=0.0, help="share of requests answered 500")
    flt.add_argument(
        "--rate-limit-rate", type=_probability, default=0.0, help="share answered a spurious 429"
    )
    flt.add_argument("--slow-rate", type=_probability, default=0.0, help="share answered late")
    flt.add_argument(
        "--slow-seconds", type=float, default=5.0, help="how late, real seconds (default %(default)s)"
    )
    flt.add_argument(
        "--drop-webhook-rate", type=_probability, default=0.0, help="share of webhooks never sent"
    )
    flt.add_argument("--job-fail-rate", type=_probability, default=0.0, help="share of jobs that end failed")
    flt.add_argument("--seed", type=int, help="seed of the fault dice")
    flt.add_argument(
        "--graphql-errors-200",
        action="store_true",
        help="send GraphQL errors inside HTTP 200 instead of the matching status",
    )


def _load_keys_file(path: Path) -> list[AccountConfig]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read keys file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"keys file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise ValueError(f"keys file {path} must hold a JSON list of account objects")
    return [AccountConfig.from_dict(item, i) for i, item in enumerate(raw)]


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The configuration the options describe; ValueError if they do not add up."""
    accounts: list[AccountConfig] = []
    if args.keys_file is not None:
        accounts.extend(_load_keys_file(args.keys_file))
    if args.api_key:
        accounts.append(
            AccountConfig(
                key=args.api_key,
                plan=args.plan,
                credits=args.credits,
                webhook_secret=args.webhook_secret,
                label=args.label,
            )
        )
    if not accounts:
        raise ValueError("give --api-key KEY or --keys-file FILE")
    # --rpm/--concurrency/--daily and --webhook-secret fill in what an account leaves unset.
    filled: list[AccountConfig] = []
    for acct in accounts:
        filled.append(
            dataclasses.replace(
                acct,
                webhook_secret=acct.webhook_secret or args.webhook_secret,
                requests_per_minute=acct.requests_per_minute
                if acct.requests_per_minute is not None
                else args.rpm,
                concurrent_jobs=acct.concurrent_jobs
                if acct.concurrent_jobs is not None
                else args.concurrency,
                jobs_per_day=acct.jobs_per_day if acct.jobs_per_day is not None else args.daily,
            )
        )
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        accounts=filled,
        time_scale=args.time_scale,
        public_url=args.public_url,
        output_dir=args.output_dir,
        fps=args.fps,
        video_height=args.video_height,
        crf=args.crf,
        queue_seconds=args.queue_seconds,
        processing_seconds=args.processing_seconds,
        render_workers=args.render_workers,
        render_cache_bytes=int(args.render_cache_mb * 1024 * 1024),
        webhook_attempts=args.webhook_attempts,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        drop_webhook_rate=args.drop_webhook_rate,
        job_fail_rate=args.job_fail_rate,
        seed=args.seed,
        graphql_errors_200=args.graphql_errors_200,
    )
    config.validate()
    return config


async def _serve(config: EmulatorConfig) -> int:
    emulator = Emulator(config)
    try:
        await emulator.start()
    except OSError as exc:
        print(
            f"emulator: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    print(emulator.banner, flush=True)
    try:
        await stop_requested()
    finally:
        await emulator.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the emulator until SIGINT/SIGTERM; the exit code (2 for bad options)."""
    level = getattr(args, "log_level", None)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=(level or "info").upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        )
    if level:
        logging.getLogger("emulator").setLevel(level.upper())
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:  # where signal handlers cannot be installed
        return 0


def run(argv: Sequence[str] | None = None, prog: str = "animate-emulator") -> int:
    """The ``animate-emulator`` console script (also ``python -m emulator``, ``python -m bot emulator``)."""
    parser = argparse.ArgumentParser(prog=prog)
    configure_parser(parser)
    return main(parser.parse_args(argv))
