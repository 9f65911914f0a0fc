"""A create request (validated), a job record, and how both look on the wire."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from emulator.errors import bad_input
from shared import contract

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_job_id() -> str:
    """An unguessable id, safe in a URL path (``/outputs/<id>.mp4``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def is_job_id(value: str) -> bool:
    return 1 <= len(value) <= 64 and all(c in _ID_ALPHABET for c in value)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``: ``2024-01-01T00:00:00.000Z``."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A create call's parameters, validated, defaults applied."""

    image_ref: str  # http(s) URL or data: URI
    prompt: str | None
    duration: int
    aspect_ratio: str
    motion: str
    version: str
    webhook_url: str | None

    @property
    def cost(self) -> int:
        return contract.credit_cost(self.version, self.duration, self.motion)


# The canonical field names of a create call (as in the REST body) and where they sit in each
# transport, for error messages that name the field the caller actually sent.
CANONICAL_FIELDS = (
    "service",
    "imageUrl",
    "image",
    "prompt",
    "duration",
    "aspectRatio",
    "motionIntensity",
    "version",
    "webhookUrl",
)
REST_PATHS: dict[str, str] = {name: name for name in CANONICAL_FIELDS}
ANIMATE_PATHS: dict[str, str] = {name: f"input.{name}" for name in CANONICAL_FIELDS}
GENERATE_PATHS: dict[str, str] = {
    "service": "input.provider",
    "imageUrl": "input.input.imageUrl",
    "image": "input.input.image",
    "prompt": "input.input.prompt",
    "duration": "input.options.duration",
    "aspectRatio": "input.options.aspectRatio",
    "motionIntensity": "input.options.motionIntensity",
    "version": "input.options.version",
    "webhookUrl": "input.options.webhookUrl",
}


def _choice(raw: Mapping[str, Any], name: str, path: str, allowed: tuple[str, ...], default: str) -> str:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise bad_input(
            f"Invalid value {value!r} for {path}: allowed values are {', '.join(allowed)}",
            field=path,
            allowed=list(allowed),
        )
    return value


def _optional_str(raw: Mapping[str, Any], name: str, path: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_input(f"{path} must be a string", field=path)
    return value


def parse_create(raw: Mapping[str, Any], paths: Mapping[str, str]) -> CreateRequest:
    """Validate a create call given by canonical field names; raise BAD_USER_INPUT naming the
    offending field (as ``paths`` spells it) and the allowed values."""
    service = raw.get("service")
    if service != contract.SERVICE:
        if service is None:
            raise bad_input(
                f"{paths['service']} is required: use {contract.SERVICE!r}", field=paths["service"]
            )
        raise bad_input(
            f"Invalid value {service!r} for {paths['service']}: allowed values are {contract.SERVICE}",
            field=paths["service"],
            allowed=[contract.SERVICE],
        )
    image_url = _optional_str(raw, "imageUrl", paths["imageUrl"])
    image_alias = _optional_str(raw, "image", paths["image"])
    image_ref = image_url or image_alias
    if not image_ref:
        raise bad_input(
            f"{paths['imageUrl']} is required (an http(s) URL or a data: URI)", field=paths["imageUrl"]
        )
    scheme = (
        urlsplit(image_ref).scheme.lower() if not image_ref.startswith(contract.DATA_URI_PREFIX) else "data"
    )
    if scheme not in ("http", "https", "data"):
        raise bad_input(f"{paths['imageUrl']} must be an http(s) URL or a data: URI", field=paths["imageUrl"])

    prompt = _optional_str(raw, "prompt", paths["prompt"])
    if prompt is not None and len(prompt) > contract.MAX_PROMPT_CHARS:
        raise bad_input(
            f"{paths['prompt']} is too long: {len(prompt)} characters, at most {contract.MAX_PROMPT_CHARS}",
            field=paths["prompt"],
        )

    duration_raw = raw.get("duration")
    if duration_raw is None:
        duration = contract.DEFAULT_DURATION
    elif (
        isinstance(duration_raw, bool)
        or not isinstance(duration_raw, int)
        or duration_raw not in contract.DURATIONS
    ):
        allowed = ", ".join(str(d) for d in contract.DURATIONS)
        raise bad_input(
            f"Invalid value {duration_raw!r} for {paths['duration']}: allowed values are {allowed} (seconds)",
            field=paths["duration"],
            allowed=list(contract.DURATIONS),
        )
    else:
        duration = duration_raw

    aspect = _choice(
        raw, "aspectRatio", paths["aspectRatio"], contract.ASPECT_RATIOS, contract.DEFAULT_ASPECT_RATIO
    )
    motion = _choice(
        raw, "motionIntensity", paths["motionIntensity"], contract.MOTIONS, contract.DEFAULT_MOTION
    )
    version = _choice(raw, "version", paths["version"], contract.VERSIONS, contract.DEFAULT_VERSION)

    webhook_url = _optional_str(raw, "webhookUrl", paths["webhookUrl"])
    if webhook_url:
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad_input(
                f"{paths['webhookUrl']} must be an absolute http(s) URL", field=paths["webhookUrl"]
            )
    return CreateRequest(
        image_ref=image_ref,
        prompt=prompt,
        duration=duration,
        aspect_ratio=aspect,
        motion=motion,
        version=version,
        webhook_url=webhook_url or None,
    )


@dataclass(slots=True)
class Job:
    """One job, owned by one API key."""

    id: str
    owner: str  # the account's label (never its key)
    request: CreateRequest
    cost: int
    created_at: datetime
    idempotency_key: str | None = None
    status: str = contract.STATUS_QUEUED
    url: str | None = None
    width: int | None = None
    height: int | None = None
    completed_at: datetime | None = None
    error: str | None = None
    fail: bool = False  # fault: the job ends failed
    drop_webhook: bool = False  # fault: its webhook is never sent

    @property
    def credit_cost(self) -> int:
        """What the job costs the caller: a failed job is refunded and reads 0."""
        if self.status == contract.STATUS_FAILED and not contract.FAILED_JOBS_BILLED:
            return 0
        return self.cost

    @property
    def metadata(self) -> dict[str, int] | None:
        if self.status != contract.STATUS_COMPLETED or self.width is None or self.height is None:
            return None
        return {"duration": self.request.duration, "width": self.width, "height": self.height}

    def to_api(self) -> dict[str, Any]:
        """The job as the API shows it (GraphQL resolves from this dict too)."""
        req = self.request
        return {
            "id": self.id,
            "status": self.status,
            "type": contract.GENERATE_TYPE,
            "provider": contract.SERVICE,
            "service": contract.SERVICE,
            "url": self.url,
            "metadata": self.metadata,
            "creditCost": self.credit_cost,
            "createdAt": iso(self.created_at),
            "completedAt": iso(self.completed_at),
            "error": self.error,
            "webhookUrl": req.webhook_url,
            "duration": req.duration,
            "aspectRatio": req.aspect_ratio,
            "motionIntensity": req.motion,
            "version": req.version,
            "prompt": req.prompt,
        }

    def webhook_payload(self) -> dict[str, Any]:
        """The contract's webhook body; ``error`` only when failed."""
        payload: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "url": self.url,
            "service": contract.SERVICE,
            "createdAt": iso(self.created_at),
            "completedAt": iso(self.completed_at),
            "metadata": self.metadata,
        }
        if self.status == contract.STATUS_FAILED:
            payload["error"] = self.error
        return payload


def now_utc() -> datetime:
    return datetime.now(UTC)
