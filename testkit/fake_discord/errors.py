"""Discord's JSON error codes and the exception the fake's handlers raise to answer with one."""

from __future__ import annotations

from typing import Any


class Code:
    """JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)."""

    GENERAL = 0
    UNKNOWN_APPLICATION = 10002
    UNKNOWN_CHANNEL = 10003
    UNKNOWN_GUILD = 10004
    UNKNOWN_MEMBER = 10007
    UNKNOWN_MESSAGE = 10008
    UNKNOWN_ROLE = 10011
    UNKNOWN_USER = 10013
    UNKNOWN_WEBHOOK = 10015
    UNKNOWN_INTERACTION = 10062
    UNKNOWN_APPLICATION_COMMAND = 10063
    REQUEST_ENTITY_TOO_LARGE = 40005
    INTERACTION_ALREADY_ACKNOWLEDGED = 40060
    MISSING_ACCESS = 50001
    CANNOT_EDIT_OTHERS_MESSAGE = 50005
    EMPTY_MESSAGE = 50006
    CANNOT_DM_USER = 50007
    MISSING_PERMISSIONS = 50013
    INVALID_WEBHOOK_TOKEN = 50027
    INVALID_FORM_BODY = 50035
    INVALID_JSON = 50109


MESSAGES: dict[int, str] = {
    Code.UNKNOWN_APPLICATION: "Unknown Application",
    Code.UNKNOWN_CHANNEL: "Unknown Channel",
    Code.UNKNOWN_GUILD: "Unknown Guild",
    Code.UNKNOWN_MEMBER: "Unknown Member",
    Code.UNKNOWN_MESSAGE: "Unknown Message",
    Code.UNKNOWN_ROLE: "Unknown Role",
    Code.UNKNOWN_USER: "Unknown User",
    Code.UNKNOWN_WEBHOOK: "Unknown Webhook",
    Code.UNKNOWN_INTERACTION: "Unknown interaction",
    Code.UNKNOWN_APPLICATION_COMMAND: "Unknown application command",
    Code.REQUEST_ENTITY_TOO_LARGE: "Request entity too large",
    Code.INTERACTION_ALREADY_ACKNOWLEDGED: "Interaction has already been acknowledged.",
    Code.MISSING_ACCESS: "Missing Access",
    Code.CANNOT_EDIT_OTHERS_MESSAGE: "Cannot edit a message authored by another user",
    Code.EMPTY_MESSAGE: "Cannot send an empty message",
    Code.CANNOT_DM_USER: "Cannot send messages to this user",
    Code.MISSING_PERMISSIONS: "Missing Permissions",
    Code.INVALID_WEBHOOK_TOKEN: "Invalid Webhook Token",
    Code.INVALID_FORM_BODY: "Invalid Form Body",
    Code.INVALID_JSON: "The request body contains invalid JSON.",
}


class ApiError(Exception):
    """Raised inside a route handler; the server answers ``status`` with ``{"message", "code"}``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        errors: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message or MESSAGES.get(code) or f"{status}: error"
        self.errors = errors
        super().__init__(f"{status} {code} {self.message}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


def form_error(path: str, message: str, error_code: str = "BASE_TYPE_INVALID") -> ApiError:
    """A 400 / 50035 "Invalid Form Body" with Discord's nested ``errors`` structure.

    ``path`` is dotted, e.g. ``"embeds.0.title"``.
    """
    errors: dict[str, Any] = {"_errors": [{"code": error_code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return ApiError(400, Code.INVALID_FORM_BODY, errors=errors)


def not_found(code: int) -> ApiError:
    return ApiError(404, code)


def forbidden(code: int) -> ApiError:
    return ApiError(403, code)


class WaitTimeout(TimeoutError):
    """A ``FakeDiscord`` wait helper ran out of time; the message says what *was* seen."""


class NoBotConnected(RuntimeError):
    """An interaction was requested but no bot gateway session is connected and ready."""
