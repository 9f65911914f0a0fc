"""The message and command limits Discord enforces (answered as 400 / 50035 or 50006)."""

from __future__ import annotations

import unicodedata
from typing import Any

from .errors import ApiError, Code, form_error

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_FILES = 10
MAX_EMBED_TOTAL = 6000
COMPONENTS_V2_FLAG = 1 << 15

MAX_NAME = 32
MAX_DESCRIPTION = 100
MAX_CHOICES = 25
MAX_OPTIONS = 25
MAX_ACTION_ROWS = 5
BAD_DESCRIPTION = f"Must be between 1 and {MAX_DESCRIPTION} in length."

# The Devanagari and Thai blocks: Discord also allows those scripts' vowel signs and marks
# (categories Mn/Mc, which \p{L}\p{N} leave out).
_EXTRA_SCRIPT_RANGES = ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x0E00, 0x0E7F))


def _name_char_ok(ch: str) -> bool:
    if ch in "-_'":
        return True
    if unicodedata.category(ch)[0] in "LN":
        return True
    return any(lo <= ord(ch) <= hi for lo, hi in _EXTRA_SCRIPT_RANGES)


def valid_command_name(name: Any) -> bool:
    r"""Discord's rule for CHAT_INPUT command and option names: the docs' regex
    ``^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$`` (unicode), and lower case wherever a
    letter has a lower-case form.

    Checked by Unicode category with ``unicodedata`` (stdlib): ``re`` has no ``\p{..}`` classes,
    and its ``\w`` is not the same set (it takes every ``str.isalnum()`` character); the
    ``regex`` module would read the pattern as written but is not installed here, and a
    dependency for one character class is not worth it. The two scripts are taken by their
    Unicode blocks, which is what their marks need.
    """
    return (
        isinstance(name, str)
        and 1 <= len(name) <= MAX_NAME
        and all(_name_char_ok(ch) for ch in name)
        and name == name.lower()
    )


def _check_len(value: Any, limit: int, path: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        raise form_error(path, "Must be a string.", "BASE_TYPE_STRING")
    if len(value) > limit:
        raise form_error(path, f"Must be {limit} or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    return len(value)


def validate_embeds(embeds: Any) -> None:
    if embeds is None:
        return
    if not isinstance(embeds, list):
        raise form_error("embeds", "Must be an array.", "BASE_TYPE_ARRAY")
    if len(embeds) > MAX_EMBEDS:
        raise form_error("embeds", f"Must be {MAX_EMBEDS} or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    total = 0
    for i, e in enumerate(embeds):
        p = f"embeds.{i}"
        if not isinstance(e, dict):
            raise form_error(p, "Must be an object.", "MODEL_TYPE_CONVERT")
        total += _check_len(e.get("title"), 256, f"{p}.title")
        total += _check_len(e.get("description"), 4096, f"{p}.description")
        fields = e.get("fields") or []
        if len(fields) > 25:
            raise form_error(f"{p}.fields", "Must be 25 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        for j, f in enumerate(fields):
            if not f.get("name") or f.get("value") in (None, ""):
                raise form_error(f"{p}.fields.{j}", "This field is required", "BASE_TYPE_REQUIRED")
            total += _check_len(f.get("name"), 256, f"{p}.fields.{j}.name")
            total += _check_len(f.get("value"), 1024, f"{p}.fields.{j}.value")
        if isinstance(e.get("footer"), dict):
            total += _check_len(e["footer"].get("text"), 2048, f"{p}.footer.text")
        if isinstance(e.get("author"), dict):
            total += _check_len(e["author"].get("name"), 256, f"{p}.author.name")
    if total > MAX_EMBED_TOTAL:
        raise form_error("embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED")


def _walk_components(components: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in components:
        if not isinstance(c, dict):
            continue
        out.append(c)
        for key in ("components",):
            if isinstance(c.get(key), list):
                out.extend(_walk_components(c[key]))
        if isinstance(c.get("accessory"), dict):
            out.extend(_walk_components([c["accessory"]]))
        if isinstance(c.get("component"), dict):
            out.extend(_walk_components([c["component"]]))
    return out


def validate_components(components: Any, flags: int) -> None:
    if components is None:
        return
    if not isinstance(components, list):
        raise form_error("components", "Must be an array.", "BASE_TYPE_ARRAY")
    v2 = bool(flags & COMPONENTS_V2_FLAG)
    if not v2:
        if len(components) > MAX_ACTION_ROWS:
            raise form_error(
                "components", f"Must be {MAX_ACTION_ROWS} or fewer in length.", "BASE_TYPE_MAX_LENGTH"
            )
        for i, row in enumerate(components):
            if not isinstance(row, dict) or row.get("type") != 1:
                raise form_error(f"components.{i}.type", "Top-level components must be action rows.")
            children = row.get("components") or []
            if not 1 <= len(children) <= 5:
                raise form_error(
                    f"components.{i}.components", "Must be between 1 and 5 in length.", "BASE_TYPE_BAD_LENGTH"
                )
    elif len(_walk_components(components)) > 40:
        raise form_error("components", "Must be 40 or fewer in total.", "BASE_TYPE_MAX_LENGTH")
    seen: set[str] = set()
    for c in _walk_components(components):
        ctype = c.get("type")
        custom_id = c.get("custom_id")
        if custom_id is not None:
            _check_len(custom_id, 100, "components.custom_id")
            if custom_id in seen:
                raise form_error(
                    "components", "Component custom id cannot be duplicated", "COMPONENT_CUSTOM_ID_DUPLICATED"
                )
            seen.add(custom_id)
        if ctype == 2:
            style = c.get("style")
            _check_len(c.get("label"), 80, "components.label")
            if style == 5:
                if not c.get("url") or custom_id is not None:
                    raise form_error("components.url", "Link buttons need a url and no custom_id.")
            elif style == 6:
                if not c.get("sku_id"):
                    raise form_error("components.sku_id", "Premium buttons need a sku_id.")
            elif not custom_id:
                raise form_error("components.custom_id", "This field is required", "BASE_TYPE_REQUIRED")
        elif ctype == 3:
            options = c.get("options") or []
            if not 1 <= len(options) <= 25:
                raise form_error(
                    "components.options", "Must be between 1 and 25 in length.", "BASE_TYPE_BAD_LENGTH"
                )
            if not custom_id:
                raise form_error("components.custom_id", "This field is required", "BASE_TYPE_REQUIRED")


def validate_message_fields(payload: dict[str, Any]) -> None:
    """Limits of the fields present in ``payload`` (create or edit)."""
    if "content" in payload and payload["content"] is not None:
        _check_len(payload["content"], MAX_CONTENT, "content")
    validate_embeds(payload.get("embeds"))
    flags = int(payload.get("flags") or 0)
    validate_components(payload.get("components"), flags)
    if flags & COMPONENTS_V2_FLAG and (payload.get("content") or payload.get("embeds")):
        raise form_error(
            "content", "The 'content' and 'embeds' fields cannot be used when using components v2."
        )


def ensure_not_empty(
    content: str, embeds: list[Any], components: list[Any], n_files: int, extra: bool
) -> None:
    if not content.strip() and not embeds and not components and not n_files and not extra:
        raise ApiError(400, Code.EMPTY_MESSAGE)


def validate_files_count(n: int) -> None:
    if n > MAX_FILES:
        raise form_error("attachments", f"Must be {MAX_FILES} or fewer in length.", "BASE_TYPE_MAX_LENGTH")


# --- application commands ---------------------------------------------------------------------


def _validate_localizations(obj: dict[str, Any], path: str) -> None:
    """Localized names and descriptions follow the same rules as the originals."""
    pre = f"{path}." if path else ""
    for locale, value in (obj.get("name_localizations") or {}).items():
        if not valid_command_name(value):
            path_of = f"{pre}name_localizations.{locale}"
            raise form_error(path_of, "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME")
    for locale, value in (obj.get("description_localizations") or {}).items():
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_DESCRIPTION:
            raise form_error(
                f"{pre}description_localizations.{locale}",
                f"Must be between 1 and {MAX_DESCRIPTION} in length.",
                "BASE_TYPE_BAD_LENGTH",
            )


def _validate_options(options: Any, path: str, depth: int) -> None:
    if options is None:
        return
    if not isinstance(options, list):
        raise form_error(path, "Must be an array.", "BASE_TYPE_ARRAY")
    if len(options) > MAX_OPTIONS:
        raise form_error(path, f"Must be {MAX_OPTIONS} or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    seen_optional = False
    names: set[str] = set()
    for i, opt in enumerate(options):
        p = f"{path}.{i}"
        name = opt.get("name", "")
        if not valid_command_name(name):
            raise form_error(f"{p}.name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME")
        _validate_localizations(opt, p)
        if name in names:
            raise form_error(
                f"{p}.name", "Option names must be unique", "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS"
            )
        names.add(name)
        desc = opt.get("description", "")
        if not isinstance(desc, str) or not 1 <= len(desc) <= MAX_DESCRIPTION:
            raise form_error(f"{p}.description", BAD_DESCRIPTION, "BASE_TYPE_BAD_LENGTH")
        otype = opt.get("type")
        if otype in (1, 2):
            if depth >= 2 or (otype == 2 and depth >= 1):
                raise form_error(f"{p}.type", "Sub-command nesting is too deep.")
            _validate_options(opt.get("options"), f"{p}.options", depth + 1)
            continue
        if opt.get("required"):
            if seen_optional:
                raise form_error(
                    f"{p}.required",
                    "Required options must be placed before non-required options",
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                )
        else:
            seen_optional = True
        choices = opt.get("choices") or []
        if len(choices) > MAX_CHOICES:
            raise form_error(
                f"{p}.choices", f"Must be {MAX_CHOICES} or fewer in length.", "BASE_TYPE_MAX_LENGTH"
            )
        for j, ch in enumerate(choices):
            if not 1 <= len(str(ch.get("name", ""))) <= 100:
                raise form_error(
                    f"{p}.choices.{j}.name", "Must be between 1 and 100 in length.", "BASE_TYPE_BAD_LENGTH"
                )


def validate_commands(commands: Any) -> None:
    """Checks a bulk-overwrite body like Discord does (names, descriptions, options)."""
    if not isinstance(commands, list):
        raise form_error("_", "Must be an array.", "BASE_TYPE_ARRAY")
    seen: set[tuple[int, str]] = set()
    n_chat = 0
    for i, cmd in enumerate(commands):
        validate_command(cmd, path=str(i))
        ctype = int(cmd.get("type", 1))
        key = (ctype, cmd["name"])
        if key in seen:
            raise form_error(
                f"{i}.name", "Application command names must be unique", "APPLICATION_COMMANDS_DUPLICATE_NAME"
            )
        seen.add(key)
        n_chat += ctype == 1
    if n_chat > 100:
        raise form_error("_", "Must be 100 or fewer in length.", "BASE_TYPE_MAX_LENGTH")


def validate_command(cmd: Any, path: str = "") -> None:
    pre = f"{path}." if path else ""
    if not isinstance(cmd, dict):
        raise form_error(path or "_", "Must be an object.", "MODEL_TYPE_CONVERT")
    ctype = int(cmd.get("type", 1))
    name = cmd.get("name", "")
    desc = cmd.get("description", "")
    if ctype == 1:
        if not valid_command_name(name):
            raise form_error(f"{pre}name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME")
        _validate_localizations(cmd, pre.rstrip("."))
        if not isinstance(desc, str) or not 1 <= len(desc) <= MAX_DESCRIPTION:
            raise form_error(f"{pre}description", BAD_DESCRIPTION, "BASE_TYPE_BAD_LENGTH")
        _validate_options(cmd.get("options"), f"{pre}options", 0)
    else:
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise form_error(f"{pre}name", "Must be between 1 and 32 in length.", "BASE_TYPE_BAD_LENGTH")
        if desc:
            raise form_error(f"{pre}description", "Context menu commands cannot have a description")
