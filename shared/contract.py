"""Plain facts of the Doitong "Runway image-to-video" API, and every choice we made for it.

The vendor page (the workspace's ``../shared/seeds/``, outside this repository) is incomplete
and contradicts itself in places; the project's reading of it is ``../shared/doitong-api.md``.
Each "decided" item there lives here, once, so that when the real API answers differently
there is one place to change.

This module holds data only (no I/O, no client or server logic): the bot's API client, the
emulator and the relay all read it, and none of them may import another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

# --- transport -------------------------------------------------------------------------------

DEFAULT_BASE_URL: Final = "https://api.doitong.com"
GRAPHQL_PATH: Final = "/graphql"
REST_CREATE_PATH: Final = "/v1/image_to_video"
REST_JOB_PATH: Final = "/v1/image_to_video/{id}"  # decided: the page shows no status route
OUTPUTS_PATH: Final = "/outputs/{id}.mp4"

SERVICE: Final = "runway-i2v"
GENERATE_TYPE: Final = "VIDEO"

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
API_KEY_HEADER: Final = "X-API-Key"
SIGNATURE_HEADER: Final = "X-Doitong-Signature"
SIGNATURE_PREFIX: Final = "sha256="
RATE_LIMIT_LIMIT_HEADER: Final = "X-RateLimit-Limit"
RATE_LIMIT_REMAINING_HEADER: Final = "X-RateLimit-Remaining"
# Decided: Unix time in seconds. It may carry a fraction (the emulator's time-scaled windows
# are shorter than a second); readers parse it as a float.
RATE_LIMIT_RESET_HEADER: Final = "X-RateLimit-Reset"

# --- options ---------------------------------------------------------------------------------

Duration = Literal[5, 10]
AspectRatio = Literal["16:9", "9:16", "1:1"]
Motion = Literal["low", "medium", "high"]
Version = Literal["gen-2", "gen-3", "gen-4"]

DURATIONS: Final[tuple[int, ...]] = get_args(Duration)
ASPECT_RATIOS: Final[tuple[str, ...]] = get_args(AspectRatio)
MOTIONS: Final[tuple[str, ...]] = get_args(Motion)
VERSIONS: Final[tuple[str, ...]] = get_args(Version)

DEFAULT_DURATION: Final = 5
DEFAULT_ASPECT_RATIO: Final = "16:9"
DEFAULT_MOTION: Final = "medium"  # decided
DEFAULT_VERSION: Final = "gen-4"  # decided
MAX_PROMPT_CHARS: Final = 1000  # decided: the page gives no bound; Discord's option cap is 6000

ASPECT_RATIO_FRACTIONS: Final[dict[str, tuple[int, int]]] = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
}

# --- input image -----------------------------------------------------------------------------
# Decided: the page states no limits for the input image. These are what the emulator enforces
# and what the bot checks before spending anything, so a user hears "too big" from us, at once.
IMAGE_FORMATS: Final[dict[str, str]] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024  # what the API downloads; Discord's default upload cap
MAX_IMAGE_PIXELS: Final = 40_000_000  # ~ 8K x 5K; larger is a decompression bomb for our use
MIN_IMAGE_SIDE: Final = 64  # below this there is nothing to animate
MAX_IMAGE_ASPECT: Final = 4.0  # longest side / shortest side; Runway crops to at most 16:9
# Decided: a local file travels inline as a data: URI in imageUrl. The emulator accepts it; a
# real deployment gives the API an https URL (Discord's attachment URL) instead.
DATA_URI_PREFIX: Final = "data:"

# --- plans -----------------------------------------------------------------------------------

PlanName = Literal["free", "starter", "pro", "enterprise"]
PLAN_NAMES: Final[tuple[str, ...]] = get_args(PlanName)


@dataclass(frozen=True, slots=True)
class Plan:
    """Limits of one API plan. ``jobs_per_day`` None means unlimited."""

    name: str
    requests_per_minute: int
    concurrent_jobs: int
    jobs_per_day: int | None


# Enterprise is "custom" on the page; these defaults are ours and overridable by the operator.
PLANS: Final[dict[str, Plan]] = {
    "free": Plan("free", 10, 1, 100),
    "starter": Plan("starter", 30, 3, 1_000),
    "pro": Plan("pro", 60, 10, 10_000),
    "enterprise": Plan("enterprise", 600, 50, None),
}

RATE_WINDOW_SECONDS: Final = 60.0  # "requests per minute": a fixed window per key
DAY_SECONDS: Final = 86_400.0

# --- credits ---------------------------------------------------------------------------------
# Decided price table: credits per 5 seconds of video; "high" motion doubles it.
CREDITS_PER_5S: Final[dict[str, int]] = {"gen-2": 10, "gen-3": 25, "gen-4": 50}
HIGH_MOTION_FACTOR: Final = 2


def credit_cost(version: str, duration: int, motion: str) -> int:
    """Credits one job costs, per the decided price table."""
    cost = CREDITS_PER_5S[version] * math.ceil(duration / 5)
    return cost * HIGH_MOTION_FACTOR if motion == "high" else cost


# Decided: a failed job is not billed (the API refunds it; its creditCost reads 0).
FAILED_JOBS_BILLED: Final = False

# --- job statuses ----------------------------------------------------------------------------

STATUS_QUEUED: Final = "queued"
STATUS_PROCESSING: Final = "processing"
STATUS_COMPLETED: Final = "completed"
STATUS_FAILED: Final = "failed"
API_STATUSES: Final = (STATUS_QUEUED, STATUS_PROCESSING, STATUS_COMPLETED, STATUS_FAILED)
TERMINAL_API_STATUSES: Final = frozenset({STATUS_COMPLETED, STATUS_FAILED})

# --- errors ----------------------------------------------------------------------------------

CODE_BAD_USER_INPUT: Final = "BAD_USER_INPUT"
CODE_UNAUTHENTICATED: Final = "UNAUTHENTICATED"
CODE_INSUFFICIENT_CREDITS: Final = "INSUFFICIENT_CREDITS"
CODE_RATE_LIMITED: Final = "RATE_LIMITED"
CODE_INTERNAL: Final = "INTERNAL_SERVER_ERROR"
CODE_NOT_FOUND: Final = "NOT_FOUND"  # decided: REST GET of an unknown job (GraphQL gives null)

HTTP_STATUS_FOR_CODE: Final[dict[str, int]] = {
    CODE_BAD_USER_INPUT: 400,
    CODE_UNAUTHENTICATED: 401,
    CODE_INSUFFICIENT_CREDITS: 402,
    CODE_NOT_FOUND: 404,
    CODE_RATE_LIMITED: 429,
    CODE_INTERNAL: 500,
}
CODE_FOR_HTTP_STATUS: Final[dict[int, str]] = {v: k for k, v in HTTP_STATUS_FOR_CODE.items()}

# --- GraphQL documents -----------------------------------------------------------------------

JOB_FIELDS: Final = "id status url metadata creditCost createdAt completedAt error"

GENERATE_MUTATION: Final = (
    "mutation Generate($input: GenerateInput!) {"
    " generate(input: $input) { id status type provider url metadata creditCost createdAt } }"
)

# The page's JavaScript sample; servers accept it, our client does not send it.
ANIMATE_IMAGE_MUTATION: Final = (
    "mutation AnimateImage($input: ImageAnimationInput!) { animateImage(input: $input) { id status url } }"
)

JOB_QUERY: Final = "query Job($id: ID!) { job(id: $id) { " + JOB_FIELDS + " } }"

# A request that touches nothing: used by `check` to read the rate-limit headers.
PING_QUERY: Final = "query Ping { __typename }"

# REST create responses and reads put the job under this field, as the page's sample does.
REST_RESULT_FIELD: Final = "imagevideo"
