"""Interaction handles and the INTERACTION_CREATE payloads the fake builds like Discord does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .models import (
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    InteractionCallback,
    MessageEvent,
    Perm,
    RecordedAttachment,
    RecordedMessage,
)

if TYPE_CHECKING:
    from .server import FakeDiscord

AttachmentSpec = tuple[bytes, str] | tuple[bytes, str, str] | RecordedAttachment
"""A user attachment: ``(data, filename)``, ``(data, filename, content_type)`` or a prepared one."""

OPTION_STRING, OPTION_INTEGER, OPTION_BOOLEAN, OPTION_USER = 3, 4, 5, 6
OPTION_CHANNEL, OPTION_ROLE, OPTION_MENTIONABLE, OPTION_NUMBER, OPTION_ATTACHMENT = 7, 8, 9, 10, 11


@dataclass(eq=False)
class FakeInteraction:
    """Handle of one interaction the fake dispatched (slash command or component)."""

    fake: FakeDiscord = field(repr=False)
    id: int
    token: str = field(repr=False)
    type: int
    """2 = application command, 3 = message component."""
    name: str | None
    custom_id: str | None
    user: FakeUser
    guild: FakeGuild | None
    channel: FakeChannel
    attachment_size_limit: int
    payload: dict[str, Any] = field(repr=False)
    created_at: float
    dispatched_at: float | None = None
    """Fake-clock time the INTERACTION_CREATE frame was written to the bot's socket."""
    source_message: RecordedMessage | None = field(default=None, repr=False)
    """For component interactions, the message whose component was used."""
    callbacks: list[InteractionCallback] = field(default_factory=list, repr=False)
    """Every callback attempt, accepted or rejected."""
    ack: InteractionCallback | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    user_attachments: list[RecordedAttachment] = field(default_factory=list, repr=False)
    opened_by: FakeInteraction | None = field(default=None, repr=False)
    """For a modal's submission (type 5): the interaction answered with that modal."""

    # --- derived state --------------------------------------------------------------------------

    @property
    def acknowledged(self) -> bool:
        return self.ack is not None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch to the accepted callback (None until acknowledged)."""
        return self.ack.latency if self.ack is not None else None

    @property
    def _t0(self) -> float:
        return self.dispatched_at if self.dispatched_at is not None else self.created_at

    @property
    def ack_deadline(self) -> float:
        """Fake-clock time after which a first callback answers 10062."""
        return self._t0 + self.fake.config.scaled(self.fake.config.ack_deadline)

    @property
    def token_expires_at(self) -> float:
        return self._t0 + self.fake.config.scaled(self.fake.config.token_lifetime)

    @property
    def token_expired(self) -> bool:
        return self.fake.now() > self.token_expires_at

    @property
    def events(self) -> list[MessageEvent]:
        """Message events (create/edit/delete) caused through this interaction, in order."""
        return [e for e in self.fake.events if e.interaction_id == self.id]

    @property
    def messages(self) -> list[MessageEvent]:
        """Message creations and edits through this interaction (what ``wait_for_messages`` counts)."""
        return [e for e in self.events if e.kind in ("create", "edit")]

    @property
    def original_message(self) -> RecordedMessage | None:
        if self.original_message_id is None:
            return None
        return self.fake.world.messages.get(self.original_message_id)

    @property
    def rejected_requests(self) -> list[Any]:
        """REST requests about this interaction that got an error status."""
        return [
            r
            for r in self.fake.requests
            if r.status >= 400 and (self.token in r.path or str(self.id) in r.path)
        ]

    # --- waiting ----------------------------------------------------------------------------------

    async def wait_acknowledged(self, timeout: float = 3.0) -> InteractionCallback:
        """Wait for the first *accepted* callback (type 4/5/6/7/9...) and return it.

        Raises :class:`WaitTimeout` (a ``TimeoutError``) if none arrives within ``timeout``
        seconds, or as soon as the acknowledgement window closed without one (no callback can
        be accepted after it), listing any rejected (late / duplicate) attempts.
        """
        window_left = self.ack_deadline - self.fake.now() + 0.05
        effective = max(0.0, min(timeout, window_left))

        def describe() -> str:
            tried = [(c.type, c.status, c.code, round(c.latency, 3)) for c in self.callbacks]
            why = "the acknowledgement window closed" if effective < timeout else f"not within {timeout}s"
            return (
                f"interaction {self.name or self.custom_id!r} ({self.id}) not acknowledged: {why}; "
                f"callback attempts (type, status, code, latency): {tried}"
            )

        await self.fake.wait_until(lambda: self.ack is not None, effective, describe)
        assert self.ack is not None
        return self.ack

    async def wait_for_messages(self, n: int = 1, timeout: float = 30.0) -> list[MessageEvent]:
        """Wait until ``n`` message events (follow-ups, response messages, @original and follow-up
        edits, component updates) happened through this interaction; return the first ``n``."""

        def describe() -> str:
            errors = [
                (r.method, r.path.split("/")[1] if r.path else "", r.status, r.code)
                for r in self.rejected_requests
            ]
            return (
                f"interaction {self.name or self.custom_id!r}: wanted {n} message event(s) "
                f"within {timeout}s, "
                f"got {self.messages}; ack={self.ack}; rejected requests={errors}"
            )

        await self.fake.wait_until(lambda: len(self.messages) >= n, timeout, describe)
        return self.messages[:n]


def infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return OPTION_BOOLEAN
    if isinstance(value, int):
        return OPTION_INTEGER
    if isinstance(value, float):
        return OPTION_NUMBER
    if isinstance(value, str):
        return OPTION_STRING
    if isinstance(value, FakeUser | FakeMember):
        return OPTION_USER
    if isinstance(value, FakeChannel):
        return OPTION_CHANNEL
    if isinstance(value, FakeRole):
        return OPTION_ROLE
    if isinstance(value, RecordedAttachment) or (
        isinstance(value, tuple) and value and isinstance(value[0], bytes)
    ):
        return OPTION_ATTACHMENT
    raise TypeError(f"cannot infer a Discord option type for {value!r}")


class SlashBuilder:
    """Builds ``data`` of an application-command interaction (options, resolved, validation)."""

    def __init__(
        self,
        fake: FakeDiscord,
        guild: FakeGuild | None,
        channel: FakeChannel,
        member: FakeMember | None,
        validate: bool,
    ) -> None:
        self.fake = fake
        self.world = fake.world
        self.guild = guild
        self.channel = channel
        self.member = member
        self.validate = validate
        self.resolved: dict[str, dict[str, Any]] = {}
        self.user_attachments: list[RecordedAttachment] = []

    def _resolve(self, kind: str, key: int, value: dict[str, Any]) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = value

    def attachment(self, spec: AttachmentSpec) -> RecordedAttachment:
        if isinstance(spec, RecordedAttachment):
            att = spec
        else:
            data, filename = spec[0], spec[1]
            ctype = spec[2] if len(spec) > 2 else None
            # A user's upload keeps the content type the client declared (it may lie).
            att = self.world.store_file(
                self.channel.id, filename, data, ctype, keep_content_type=ctype is not None
            )
        self.user_attachments.append(att)
        return att

    def option_value(self, otype: int, value: Any, name: str) -> Any:
        world = self.world
        if otype == OPTION_ATTACHMENT:
            att = self.attachment(value)
            self._resolve("attachments", att.id, world.attachment_json(att))
            return str(att.id)
        if otype in (OPTION_USER, OPTION_MENTIONABLE) and isinstance(value, FakeUser | FakeMember):
            user = value.user if isinstance(value, FakeMember) else value
            self._resolve("users", user.id, world.user_json(user))
            member = self.guild.members.get(user.id) if self.guild else None
            if member is not None and self.guild is not None:
                mdata = world.member_json(member, with_user=False)
                mdata["permissions"] = str(world.permissions_in(member, self.channel))
                self._resolve("members", user.id, mdata)
            return str(user.id)
        if otype in (OPTION_ROLE, OPTION_MENTIONABLE) and isinstance(value, FakeRole):
            self._resolve("roles", value.id, world.role_json(value))
            return str(value.id)
        if otype == OPTION_CHANNEL and isinstance(value, FakeChannel):
            if self.member is not None and value.guild_id == self.member.guild_id:
                perms = world.permissions_in(self.member, value)
            else:
                perms = Perm.DM_DEFAULT
            cdata = {"id": str(value.id), "name": value.name, "type": value.type, "permissions": str(perms)}
            if value.guild_id is not None:
                cdata["guild_id"] = str(value.guild_id)
            self._resolve("channels", value.id, cdata)
            return str(value.id)
        if otype == OPTION_BOOLEAN:
            if self.validate and not isinstance(value, bool):
                raise ValueError(f"option {name!r} must be a bool, got {value!r}")
            return value
        if otype == OPTION_INTEGER:
            if self.validate and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"option {name!r} must be an int, got {value!r}")
            return value
        if otype == OPTION_NUMBER:
            if self.validate and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"option {name!r} must be a number, got {value!r}")
            return value
        if otype == OPTION_STRING:
            if self.validate and not isinstance(value, str):
                raise ValueError(f"option {name!r} must be a str, got {value!r}")
            return value
        raise ValueError(f"option {name!r}: value {value!r} does not fit option type {otype}")

    def check_constraints(self, schema: dict[str, Any], value: Any) -> None:
        name = schema["name"]
        choices = schema.get("choices")
        if choices and value not in [c.get("value") for c in choices]:
            raise ValueError(
                f"option {name!r}: {value!r} is not one of the choices {[c.get('value') for c in choices]}"
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            lo, hi = schema.get("min_value"), schema.get("max_value")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ValueError(f"option {name!r}: {value!r} outside [{lo}, {hi}]")
        if isinstance(value, str) and schema.get("type") == OPTION_STRING:
            lo, hi = schema.get("min_length"), schema.get("max_length")
            if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi):
                raise ValueError(f"option {name!r}: length {len(value)} outside [{lo}, {hi}]")

    def build_options(
        self, schema: list[dict[str, Any]] | None, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema or []}
        out: list[dict[str, Any]] = []
        for name, value in values.items():
            opt_schema = by_name.get(name)
            if opt_schema is None and schema is not None and self.validate:
                raise ValueError(f"unknown option {name!r}; the synced command has {sorted(by_name)}")
            otype = int(opt_schema["type"]) if opt_schema else infer_option_type(value)
            wire = self.option_value(otype, value, name)
            if (
                opt_schema
                and self.validate
                and otype
                not in (OPTION_ATTACHMENT, OPTION_USER, OPTION_CHANNEL, OPTION_ROLE, OPTION_MENTIONABLE)
            ):
                self.check_constraints(opt_schema, value)
            out.append({"name": name, "type": otype, "value": wire})
        if schema is not None and self.validate:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"required option(s) missing: {missing}")
        return out
