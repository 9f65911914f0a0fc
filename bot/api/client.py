"""A typed async client for the Doitong image-to-video API.

One :class:`DoitongClient` per process wraps one pooled ``httpx.AsyncClient``. Every failure
the contract names surfaces as one exception of the :class:`DoitongError` hierarchy, carrying
what a user or operator needs (credits required and available, when to retry). Transient
failures (network errors, 408, 429, 5xx) are retried with exponential backoff and full jitter,
honouring ``Retry-After`` and ``X-RateLimit-Reset``; 400/401/402/403/404/422 never are.
The API key is sent in headers only and never appears in a log line or an exception.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from shared import contract

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


# --- exceptions ------------------------------------------------------------------------------


class DoitongError(Exception):
    """Anything that went wrong talking to the API."""


class APIUnreachableError(DoitongError):
    """No answer from the API after every retry (DNS, refused connection, timeouts)."""


class APIError(DoitongError):
    """The API answered with an error."""

    def __init__(
        self, message: str, *, status: int, code: str | None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after  # seconds, when the API said when to come back


class BadRequestError(APIError):
    """400/422: the request itself is wrong (an option, the image). Retrying will not help."""


class AuthenticationError(APIError):
    """401/403: the API key is missing, wrong or revoked."""


class InsufficientCreditsError(APIError):
    """402: the account cannot pay for this job."""

    def __init__(
        self, message: str, *, status: int, code: str | None, required: int | None, available: int | None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.credits_required = required
        self.credits_available = available


class RateLimitedError(APIError):
    """429 that outlasted our retries (or whose reset is too far away to wait for)."""

    @property
    def retry_at(self) -> float | None:
        return time.time() + self.retry_after if self.retry_after is not None else None


class NotFoundError(APIError):
    """404: no such job for this key."""


class ServerError(APIError):
    """5xx that outlasted our retries."""


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The last ``X-RateLimit-*`` values the API sent."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # Unix time in seconds

    def pace(self, now: float) -> float:
        """Seconds to wait before the next request so the window's budget lasts to its reset."""
        if self.remaining is None or self.reset_at is None:
            return 0.0
        left = max(0.0, self.reset_at - now)
        if self.remaining <= 0:
            return left
        return left / self.remaining


@dataclass(frozen=True, slots=True)
class ApiJob:
    """The API's view of one job."""

    id: str
    status: str
    url: str | None = None
    metadata: Mapping[str, Any] | None = None
    credit_cost: int | None = None
    created_at: str | None = None
    completed_at: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in contract.TERMINAL_API_STATUSES


@dataclass(frozen=True, slots=True)
class CreateRequest:
    image_url: str
    prompt: str
    duration: int = contract.DEFAULT_DURATION
    aspect_ratio: str = contract.DEFAULT_ASPECT_RATIO
    motion: str = contract.DEFAULT_MOTION
    version: str = contract.DEFAULT_VERSION
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A server hint (Retry-After, X-RateLimit-Reset) longer than this is not waited out inside
    # one call: the error goes up with retry_after so a scheduler can park the work instead.
    max_hint: float = 90.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)] (AWS architecture blog)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


# --- the client ------------------------------------------------------------------------------


class DoitongClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: Literal["graphql", "rest"] = "graphql",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        before_request: Callable[[], Awaitable[None]] | None = None,
        on_rate_limit: Callable[[RateLimit], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"User-Agent": "animate-bot/0.1"},
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Hooks for the account-wide request budget: every attempt, retries included, waits for
        # a permit, and every answer's rate-limit headers are reported back.
        self._before_request = before_request
        self._on_rate_limit = on_rate_limit
        self.rate_limit = RateLimit()
        self.requests_sent = 0  # every HTTP attempt, retries included: the account's budget
        self.rate_limited = 0  # of those, the ones the API answered 429 (or a GraphQL 429 code)

    def __repr__(self) -> str:
        return f"DoitongClient(base_url={self.base_url!r}, transport={self.transport!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> DoitongClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- operations --------------------------------------------------------------------------

    async def create_job(self, request: CreateRequest, *, idempotency_key: str) -> ApiJob:
        """Start a job. Retries reuse ``idempotency_key``, so the API starts (and bills) one job."""
        headers = {contract.IDEMPOTENCY_HEADER: idempotency_key}
        if self.transport == "rest":
            body = {
                "service": contract.SERVICE,
                "imageUrl": request.image_url,
                "prompt": request.prompt,
                "duration": request.duration,
                "aspectRatio": request.aspect_ratio,
                "motionIntensity": request.motion,
                "version": request.version,
            }
            if request.webhook_url:
                body["webhookUrl"] = request.webhook_url
            data = await self._request("POST", contract.REST_CREATE_PATH, json=body, headers=headers)
            return _job_from(data, contract.REST_RESULT_FIELD)
        options: dict[str, Any] = {
            "duration": request.duration,
            "aspectRatio": request.aspect_ratio,
            "motionIntensity": request.motion,
            "version": request.version,
        }
        if request.webhook_url:
            options["webhookUrl"] = request.webhook_url
        variables = {
            "input": {
                "type": contract.GENERATE_TYPE,
                "provider": contract.SERVICE,
                "input": {"imageUrl": request.image_url, "prompt": request.prompt},
                "options": options,
            }
        }
        data = await self._graphql(contract.GENERATE_MUTATION, variables, headers=headers)
        return _job_from(data, "generate")

    async def get_job(self, job_id: str) -> ApiJob | None:
        """One job's status, or None when the API does not know it."""
        if self.transport == "rest":
            try:
                data = await self._request("GET", contract.REST_JOB_PATH.format(id=job_id))
            except NotFoundError:
                return None
            return _job_from(data, contract.REST_RESULT_FIELD)
        data = await self._graphql(contract.JOB_QUERY, {"id": job_id})
        return _job_from(data, "job") if data.get("job") is not None else None

    async def get_jobs(self, job_ids: Sequence[str]) -> dict[str, ApiJob | None]:
        """Several jobs in ONE request (GraphQL aliases, whatever the create transport)."""
        unique = list(dict.fromkeys(job_ids))
        if not unique:
            return {}
        params = ", ".join(f"$id{i}: ID!" for i in range(len(unique)))
        fields = " ".join(f"j{i}: job(id: $id{i}) {{ {contract.JOB_FIELDS} }}" for i in range(len(unique)))
        query = f"query Jobs({params}) {{ {fields} }}"
        data = await self._graphql(query, {f"id{i}": job_id for i, job_id in enumerate(unique)})
        return {
            job_id: (_job_from(data, f"j{i}") if data.get(f"j{i}") is not None else None)
            for i, job_id in enumerate(unique)
        }

    async def ping(self) -> RateLimit:
        """The cheapest authenticated request; refreshes and returns :attr:`rate_limit`."""
        await self._graphql(contract.PING_QUERY, {})
        return self.rate_limit

    # --- transport ---------------------------------------------------------------------------

    async def _graphql(
        self, query: str, variables: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        body = {"query": query, "variables": dict(variables)}
        payload = await self._request("POST", contract.GRAPHQL_PATH, json=body, headers=headers)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise APIError("the API answered without data", status=200, code=None)
        return data

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send with retries; return the parsed JSON body of a success or raise a DoitongError."""
        # GraphQL authenticates with a bearer token, REST with X-API-Key (the vendor page).
        if path == contract.GRAPHQL_PATH:
            all_headers = {"Authorization": f"Bearer {self._api_key}"}
        else:
            all_headers = {contract.API_KEY_HEADER: self._api_key}
        all_headers.update(headers or {})
        url = self.base_url + path
        attempt = 0
        while True:
            if self._before_request is not None:
                await self._before_request()
            try:
                self.requests_sent += 1
                response = await self._http.request(method, url, json=json, headers=all_headers)
            except httpx.TransportError as exc:
                if attempt >= self.retry.max_retries:
                    raise APIUnreachableError(
                        f"the API at {self.base_url} did not answer ({type(exc).__name__}) "
                        f"after {attempt + 1} attempts"
                    ) from None  # the cause can hold request details; keep it out of tracebacks
                delay = self.retry.backoff(attempt, self._rng)
                log.warning("%s %s failed (%s); retry %d in %.2fs", method, path, type(exc).__name__,
                            attempt + 1, delay)  # fmt: skip
            else:
                self._remember_rate_limit(response.headers)
                error = self._error_from(response)
                if error is None:
                    return _json_body(response)
                if error.status == 429:
                    self.rate_limited += 1
                hint = self._retry_hint(response, error)
                # 408, 429 and 5xx, also when a GraphQL 200 carries their codes.
                retryable = error.status in (408, 429) or error.status >= 500
                if error.retry_after is None:
                    error.retry_after = hint  # what the headers said, for whoever parks the work
                if not retryable or attempt >= self.retry.max_retries:
                    raise error
                if hint is not None and hint > self.retry.max_hint:
                    raise error
                delay = max(hint or 0.0, self.retry.backoff(attempt, self._rng))
                log.warning("%s %s answered %d %s; retry %d in %.2fs", method, path, response.status_code,
                            error.code or "", attempt + 1, delay)  # fmt: skip
            attempt += 1
            await self._sleep(delay)

    def _remember_rate_limit(self, headers: httpx.Headers) -> None:
        limit = _number(headers.get(contract.RATE_LIMIT_LIMIT_HEADER))
        remaining = _number(headers.get(contract.RATE_LIMIT_REMAINING_HEADER))
        reset = _number(headers.get(contract.RATE_LIMIT_RESET_HEADER))
        if limit is None and remaining is None and reset is None:
            return
        self.rate_limit = RateLimit(
            limit=int(limit) if limit is not None else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_at=reset,
        )
        if self._on_rate_limit is not None:
            self._on_rate_limit(self.rate_limit)

    def _retry_hint(self, response: httpx.Response, error: APIError) -> float | None:
        """Seconds the server asked us to wait: Retry-After first, then the window reset."""
        if error.retry_after is not None:
            return error.retry_after
        retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        if retry_after is not None:
            return retry_after
        if response.status_code == 429 or isinstance(error, RateLimitedError):
            reset = self.rate_limit.reset_at
            if reset is not None:
                return max(0.0, reset - time.time())
        return None

    def _error_from(self, response: httpx.Response) -> APIError | None:
        """The typed error in a response, or None when it is a success.

        GraphQL servers may report errors inside an HTTP 200; those are treated exactly like
        the matching HTTP status.
        """
        status = response.status_code
        body = _json_body(response, strict=False)
        errors = body.get("errors") if isinstance(body, dict) else None
        if status < 400 and not errors:
            return None
        first: Mapping[str, Any] = errors[0] if isinstance(errors, list) and errors and isinstance(
            errors[0], Mapping) else {}  # fmt: skip
        extensions = first.get("extensions") if isinstance(first.get("extensions"), Mapping) else {}
        assert isinstance(extensions, Mapping)
        code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
        if status < 400:  # errors inside a 200: take the status the code stands for
            status = contract.HTTP_STATUS_FOR_CODE.get(code or "", 500)
        elif code is None:
            code = contract.CODE_FOR_HTTP_STATUS.get(status)
        message = str(first.get("message") or response.reason_phrase or f"HTTP {status}")
        retry_after = _number(extensions.get("retryAfter"))
        if status == 402 or code == contract.CODE_INSUFFICIENT_CREDITS:
            return InsufficientCreditsError(
                message,
                status=status,
                code=code,
                required=_int_or_none(extensions.get("creditsRequired")),
                available=_int_or_none(extensions.get("creditsAvailable")),
            )
        cls: type[APIError]
        if status in (401, 403) or code == contract.CODE_UNAUTHENTICATED:
            cls = AuthenticationError
        elif status == 429 or code == contract.CODE_RATE_LIMITED:
            cls = RateLimitedError
        elif status == 404 or code == contract.CODE_NOT_FOUND:
            cls = NotFoundError
        elif status >= 500:
            cls = ServerError
        elif status in (400, 422) or code == contract.CODE_BAD_USER_INPUT:
            cls = BadRequestError
        else:
            cls = APIError
        return cls(message, status=status, code=code, retry_after=retry_after)


# --- parsing helpers -------------------------------------------------------------------------


def _json_body(response: httpx.Response, *, strict: bool = True) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        if strict:
            raise APIError("the API answered with something that is not JSON",
                           status=response.status_code, code=None) from None  # fmt: skip
        return {}
    if not isinstance(body, dict):
        if strict:
            raise APIError("the API answered with unexpected JSON", status=response.status_code, code=None)
        return {}
    return body


def _job_from(data: Mapping[str, Any], field: str) -> ApiJob:
    if field == contract.REST_RESULT_FIELD and field not in data:
        data = data.get("data", data)  # REST wraps the job in {"data": {"imagevideo": ...}}
    raw = data.get(field)
    if not isinstance(raw, Mapping) or "id" not in raw:
        raise APIError(f"the API's answer has no job under {field!r}", status=200, code=None)
    status = str(raw.get("status") or "unknown")
    if status not in contract.API_STATUSES:
        log.warning("job %s has an unknown status %r; treating it as still running", raw["id"], status)
    metadata = raw.get("metadata")
    return ApiJob(
        id=str(raw["id"]),
        status=status,
        url=raw.get("url"),
        metadata=metadata if isinstance(metadata, Mapping) else None,
        credit_cost=_int_or_none(raw.get("creditCost")),
        created_at=raw.get("createdAt"),
        completed_at=raw.get("completedAt"),
        error=raw.get("error"),
    )


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int_or_none(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
