"""The one error type the emulator answers with, and its wire format."""

from __future__ import annotations

import math
from typing import Any

from shared import contract


class ApiError(Exception):
    """An API error: a contract code, a message, and extras for ``extensions``.

    ``retry_after`` (seconds) becomes the ``Retry-After`` header and ``extensions.retryAfter``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extensions = extensions

    @property
    def http_status(self) -> int:
        return contract.HTTP_STATUS_FOR_CODE.get(self.code, 500)

    def extensions_dict(self, time_scale: float) -> dict[str, Any]:
        ext: dict[str, Any] = {"code": self.code, **self.extensions}
        if self.retry_after is not None:
            ext["retryAfter"] = format_seconds(self.retry_after, time_scale)
        return ext

    def to_error(self, time_scale: float) -> dict[str, Any]:
        """One entry of the ``errors`` list."""
        return {"message": self.message, "extensions": self.extensions_dict(time_scale)}

    def body(self, time_scale: float) -> dict[str, Any]:
        return {"errors": [self.to_error(time_scale)]}


def bad_input(message: str, **extensions: Any) -> ApiError:
    return ApiError(contract.CODE_BAD_USER_INPUT, message, **extensions)


def format_seconds(seconds: float, time_scale: float) -> int | float:
    """A duration or a Unix time on the wire: a whole number (rounded up) at real speed, else a
    float with 3 decimals (scaled windows are shorter than a second)."""
    if time_scale == 1.0:
        return math.ceil(seconds)
    value = round(max(seconds, 0.0), 3)
    return 0.001 if seconds > 0 and value == 0 else value
