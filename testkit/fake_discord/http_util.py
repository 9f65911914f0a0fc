"""HTTP plumbing: exact JSON responses, rate-limit headers, body parsing with Discord's size limits,
route patterns and fault injection."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from .errors import ApiError, Code


def route_regex(pattern: str) -> re.Pattern[str]:
    """``/channels/{id}/messages`` -> regex; ``{...}`` is one path segment, ``*`` anything."""
    parts = re.split(r"(\{[^}]*\}|\*)", pattern)
    out = []
    for p in parts:
        if p == "*":
            out.append(".*")
        elif p.startswith("{") and p.endswith("}"):
            out.append("[^/]+")
        else:
            out.append(re.escape(p))
    return re.compile("^" + "".join(out) + "$")


def split_pattern(pattern: str) -> tuple[str | None, str]:
    """``"POST /x"`` -> ("POST", "/x"); ``"/x"`` or ``"* /x"`` -> (None, "/x"). Strips ``/api/v10``."""
    pattern = pattern.strip()
    method: str | None = None
    if " " in pattern:
        m, pattern = pattern.split(None, 1)
        method = None if m == "*" else m.upper()
    pattern = pattern.strip()
    if pattern.startswith("/api/v10/"):
        pattern = pattern[len("/api/v10") :]
    return method, pattern


@dataclass
class Injection:
    """A fault injected on requests matching ``pattern`` (see :meth:`FakeDiscord.inject`)."""

    pattern: str
    status: int | None
    count: int | None
    retry_after: float = 0.2
    code: int | None = None
    message: str | None = None
    delay: float = 0.0
    is_global: bool = False
    body: Any = None
    hits: int = 0
    _method: str | None = field(default=None, repr=False)
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._method, path = split_pattern(self.pattern)
        self._regex = route_regex(path)

    @property
    def remaining(self) -> int | None:
        return None if self.count is None else max(0, self.count - self.hits)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def cancel(self) -> None:
        self.count = self.hits

    def matches(self, method: str, path: str) -> bool:
        if self.exhausted:
            return False
        if self._method is not None and self._method != method:
            return False
        assert self._regex is not None
        return bool(self._regex.match(path))

    def error(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, json body, extra headers) of the injected answer."""
        assert self.status is not None
        headers: dict[str, str] = {}
        if self.status == 429:
            body: dict[str, Any] = {
                "message": self.message or "You are being rate limited.",
                "retry_after": self.retry_after,
                "global": self.is_global,
            }
            if self.code is not None:
                body["code"] = self.code
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["X-RateLimit-Scope"] = "global" if self.is_global else "user"
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
            else:
                headers["X-RateLimit-Remaining"] = "0"
                headers["X-RateLimit-Reset-After"] = f"{self.retry_after:.3f}"
        else:
            default = f"{self.status}: Injected failure"
            body = {"message": self.message or default, "code": self.code if self.code is not None else 0}
        if self.body is not None:
            body = self.body
        return self.status, body, headers


def ratelimit_headers(route_key: str, limit: int) -> dict[str, str]:
    bucket = hashlib.md5(route_key.encode(), usedforsecurity=False).hexdigest()[:32]
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(limit - 1),
        "X-RateLimit-Reset": f"{time.time() + 1.0:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket,
    }


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer whose Content-Type is *exactly* ``application/json`` (discord.py requires it)."""
    all_headers = {"Via": "1.1 google"}
    if headers:
        all_headers.update(headers)
    if status == 204 or data is None:
        return web.Response(status=204 if data is None else status, headers=all_headers)
    all_headers[hdrs.CONTENT_TYPE] = "application/json"
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


@dataclass
class Upload:
    """One ``files[n]`` part of a multipart request."""

    index: int
    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class Body:
    json: Any
    uploads: list[Upload]
    size: int


async def drain(request: web.Request) -> None:
    """Read and discard whatever is left of the request body."""
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break


def too_large() -> ApiError:
    return ApiError(413, Code.REQUEST_ENTITY_TOO_LARGE)


async def read_body(request: web.Request, max_total: int) -> Body:
    """Parses a JSON or multipart (``payload_json`` + ``files[n]``) body, enforcing ``max_total``."""
    if request.content_length is not None and request.content_length > max_total:
        await drain(request)
        raise too_large()
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        total = 0
        payload: Any = None
        uploads: list[Upload] = []
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):  # nested multipart: not something Discord takes
                raise ApiError(400, Code.INVALID_FORM_BODY)
            chunks: list[bytes] = []
            while True:
                chunk = await part.read_chunk(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_total:
                    await drain(request)
                    raise too_large()
                chunks.append(chunk)
            data = b"".join(chunks)
            name = part.name or ""
            if name == "payload_json":
                try:
                    payload = json.loads(data.decode("utf-8"))
                except ValueError as exc:
                    raise ApiError(400, Code.INVALID_JSON) from exc
            else:
                m = re.fullmatch(r"files\[(\d+)\]|file(\d*)", name)
                if m is None:
                    continue
                index = int(m.group(1) or m.group(2) or 0)
                uploads.append(
                    Upload(
                        index=index,
                        field=name,
                        filename=part.filename or f"file{index}",
                        content_type=part.headers.get(hdrs.CONTENT_TYPE),
                        data=data,
                    )
                )
        uploads.sort(key=lambda u: u.index)
        return Body(json=payload, uploads=uploads, size=total)
    raw = await request.read()
    if len(raw) > max_total:
        raise too_large()
    if not raw:
        return Body(json=None, uploads=[], size=0)
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ApiError(400, Code.INVALID_JSON) from exc
    return Body(json=parsed, uploads=[], size=len(raw))
