"""Discord's published OpenAPI 3.1 spec (``spec/openapi.json``) as the fake's contract.

Every REST request is matched against the spec's paths; its path and query parameters and its
JSON body (or a multipart request's ``payload_json``) are validated against the operation's
schemas, and every answer the fake gives against the operation's response schema for that
status. OpenAPI 3.1 schemas are JSON Schema 2020-12: the whole document is one resource of a
``referencing`` registry, so ``#/components/...`` references resolve, and each validator is
compiled once per (route, part) and cached for the process (the spec is parsed once too).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILE = Path(__file__).with_name("spec") / "openapi.json"
REQUEST_URI = "urn:discord-openapi:request"
RESPONSE_URI = "urn:discord-openapi:response"
METHODS = ("get", "put", "post", "patch", "delete")

Direction = Literal["request", "response"]


@dataclass(frozen=True)
class FieldError:
    """One reason a document fails its schema: where (``("embeds", 0, "title")``), Discord's
    error code and message."""

    path: tuple[str | int, ...]
    code: str
    message: str

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path) or "_"


@dataclass
class SpecViolation:
    """A request Discord would refuse (``direction="request"``), or an answer of the fake's own the
    spec does not allow (``"response"``, a bug in the fake)."""

    direction: Direction
    method: str
    path: str
    route: str | None
    """The spec's path template, e.g. ``/channels/{channel_id}/messages``."""
    status: int
    """The status the fake answered with."""
    errors: list[FieldError] = field(default_factory=list)
    time: float = 0.0

    @property
    def fields(self) -> list[str]:
        return [e.dotted for e in self.errors]

    def __str__(self) -> str:
        what = "; ".join(f"{e.dotted}: {e.message}" for e in self.errors)
        return f"{self.direction} {self.method} {self.path} -> {self.status}: {what}"


def errors_tree(errors: Iterable[FieldError]) -> dict[str, Any]:
    """Discord's nested ``errors`` object of a 50035 answer:
    ``{"embeds": {"0": {"title": {"_errors": [{"code", "message"}]}}}}``."""
    tree: dict[str, Any] = {}
    for err in errors:
        node = tree
        for part in err.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": err.code, "message": err.message})
    return tree


def _discord_error(err: ValidationError) -> FieldError:
    """A jsonschema error in Discord's words (the codes and messages its 50035 answers use)."""
    path: tuple[str | int, ...] = tuple(err.absolute_path)
    kind = err.validator
    value = err.validator_value
    if kind == "required":
        # jsonschema reports a missing field at its parent; Discord names the field itself.
        missing = re.match(r"'([^']+)' is a required property", err.message)
        name = missing.group(1) if missing else "_"
        return FieldError((*path, name), "BASE_TYPE_REQUIRED", "This field is required")
    bounds = ("minLength", "maxLength") if kind in ("minLength", "maxLength") else ("minItems", "maxItems")
    if kind in bounds and isinstance(err.schema, dict) and all(b in err.schema for b in bounds):
        low, high = (err.schema[b] for b in bounds)
        return FieldError(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
    if kind in ("maxLength", "maxItems"):
        return FieldError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {value} or fewer in length.")
    if kind in ("minLength", "minItems"):
        return FieldError(path, "BASE_TYPE_MIN_LENGTH", f"Must be {value} or more in length.")
    if kind == "maximum":
        return FieldError(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {value}.")
    if kind == "minimum":
        return FieldError(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {value}.")
    if kind in ("enum", "const"):
        return FieldError(path, "BASE_TYPE_CHOICES", f"Value must be one of {value!r}.")
    if kind == "pattern" and value == r"^(0|[1-9][0-9]*)$":
        return FieldError(path, "NUMBER_TYPE_COERCE", f'Value "{err.instance}" is not snowflake.')
    if kind == "type":
        return FieldError(path, "BASE_TYPE_INVALID", f"Must be of type {value}: {err.message}")
    return FieldError(path, "BASE_TYPE_INVALID", err.message)


class Schema:
    """One compiled validator (a spec JSON pointer), with Discord-shaped errors."""

    def __init__(self, registry: Registry[Any], uri: str, pointer: str, contents: Mapping[str, Any]) -> None:
        self.pointer = pointer
        self.contents = contents
        self._validator = Validator({"$ref": f"{uri}#{pointer}"}, registry=registry)
        self._scalars: dict[tuple[type, Any], list[FieldError]] = {}

    def errors(self, instance: Any) -> list[FieldError]:
        first = best_match(self._validator.iter_errors(instance))
        return [] if first is None else [_discord_error(_deepest(first))]

    def scalar_errors(self, value: str | int | float | bool) -> list[FieldError]:
        """``errors`` memoized: a path or query value (the same channel id, again and again)."""
        key = (type(value), value)
        found = self._scalars.get(key)
        if found is None:
            if len(self._scalars) > 4096:
                self._scalars.clear()
            found = self._scalars[key] = self.errors(value)
        return found


def _deepest(err: ValidationError) -> ValidationError:
    """In a union (oneOf/anyOf), the branch that got furthest: a component whose ``type`` matched
    but whose label is too long says more than "not valid under any of the given schemas"."""
    while err.context:
        # "not null" is never the interesting branch of ``oneOf: [null, X]``.
        err = max(
            err.context,
            key=lambda e: (len(e.absolute_path), e.validator != "type", e.validator_value != "null"),
        )
    return err


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class Param:
    name: str
    where: str  # "path" | "query"
    required: bool
    schema: Schema
    types: tuple[str, ...]


class SpecRoute:
    """One operation of the spec (method + path template); validators compiled on first use."""

    def __init__(self, spec: DiscordSpec, template: str, method: str) -> None:
        self.spec = spec
        self.template = template
        self.method = method.upper()
        item = spec.document["paths"][template]
        self._item = item
        self.operation: dict[str, Any] = item[method]
        self._params: list[Param] | None = None
        self._body: Schema | None = None
        self._body_compiled = False
        self._responses: dict[str, Schema | None] = {}

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    # --- parameters -------------------------------------------------------------------------

    def params(self) -> list[Param]:
        if self._params is None:
            found: dict[tuple[str, str], Param] = {}
            for scope, raw in (("", self._item.get("parameters", [])), (self.method.lower(), None)):
                params = raw if raw is not None else self.operation.get("parameters", [])
                for i, p in enumerate(params):
                    base = (self.template, scope, "parameters") if scope else (self.template, "parameters")
                    pointer = _pointer("paths", *base, str(i), "schema")
                    contents = self.spec.resolve(p["schema"])
                    schema = Schema(self.spec.registry, REQUEST_URI, pointer, contents)
                    types = schema.contents.get("type", ())
                    types = (types,) if isinstance(types, str) else tuple(types)
                    found[(p["in"], p["name"])] = Param(
                        p["name"], p["in"], bool(p.get("required")), schema, types
                    )
            self._params = list(found.values())
        return self._params

    def check_params(self, path_params: Mapping[str, str], query: Mapping[str, str]) -> list[FieldError]:
        errors: list[FieldError] = []
        for p in self.params():
            source = path_params if p.where == "path" else query if p.where == "query" else None
            if source is None or p.name not in source:
                continue
            errors.extend(
                FieldError((p.name, *e.path), e.code, e.message)
                for e in p.schema.scalar_errors(_coerce(source[p.name], p.types))
            )
        return errors

    # --- request body -----------------------------------------------------------------------

    def body_schema(self) -> Schema | None:
        if not self._body_compiled:
            self._body_compiled = True
            content = (self.operation.get("requestBody") or {}).get("content", {})
            # A multipart request carries the same object in its ``payload_json`` part.
            if "application/json" in content:
                pointer = _pointer(
                    "paths",
                    self.template,
                    self.method.lower(),
                    "requestBody",
                    "content",
                    "application/json",
                    "schema",
                )
                contents = content["application/json"]["schema"]
                self._body = Schema(self.spec.registry, REQUEST_URI, pointer, contents)
            else:
                self._body = None
        return self._body

    def check_body(self, payload: Any) -> list[FieldError]:
        schema = self.body_schema()
        if schema is None or payload is None:
            return []
        return schema.errors(payload)

    # --- responses --------------------------------------------------------------------------

    def check_response(self, status: int, data: Any) -> list[FieldError]:
        responses = self.operation.get("responses", {})
        key = next((k for k in (str(status), f"{status // 100}XX", "default") if k in responses), None)
        if key is None:
            return [
                FieldError((), "UNDECLARED_STATUS", f"the spec declares no {status} answer for {self.key}")
            ]
        if key not in self._responses:
            resp = responses[key]
            base: tuple[str, ...] = ("paths", self.template, self.method.lower(), "responses", key)
            if "$ref" in resp:
                name = resp["$ref"].rsplit("/", 1)[1]
                base = ("components", "responses", name)
                resp = self.spec.document["components"]["responses"][name]
            content = resp.get("content", {})
            if "application/json" in content:
                pointer = _pointer(*base, "content", "application/json", "schema")
                contents = content["application/json"]["schema"]
                self._responses[key] = Schema(self.spec.registry, RESPONSE_URI, pointer, contents)
            else:
                self._responses[key] = None
        schema = self._responses[key]
        if schema is None:
            if data is not None:
                return [FieldError((), "UNEXPECTED_BODY", f"the spec's {key} answer has no body")]
            return []
        if data is None:
            return [FieldError((), "MISSING_BODY", f"the spec's {key} answer has a JSON body")]
        return schema.errors(data)


def _coerce(raw: str, types: tuple[str, ...]) -> str | int | float | bool:
    """A query or path value is text; the spec types it (Discord parses ``limit=5``, ``wait=true``)."""
    if "integer" in types and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if "number" in types:
        try:
            return float(raw)
        except ValueError:
            return raw
    if "boolean" in types:
        lowered = raw.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    return raw


def _amend(document: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The document with some component schemas replaced (shallow copies: the rest is shared)."""
    components = document["components"]
    return {**document, "components": {**components, "schemas": {**components["schemas"], **schemas}}}


def request_amendments(schemas: Mapping[str, Any]) -> dict[str, Any]:
    """Where Discord accepts more than its spec says, the fake does too (the README lists them).

    A snowflake may be a JSON integer: the spec types it as a decimal string, Discord parses
    either, and discord.py sends integers (a new upload's ``attachments[].id``, its index among
    the ``files[n]`` parts; ``recipient_id`` when it opens a DM). (The other way round, an
    integer field given as a string of digits: :func:`accept_int_strings`.)
    """
    snowflake = schemas["SnowflakeType"]
    return {"SnowflakeType": {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}}


def accept_int_strings(node: Any) -> Any:
    """The request document with every integer field also taking a string of digits.

    The spec's own README: "Our API accepts strings for int fields if they are parseable as
    ints" (the spec types some fields as ints that the docs call strings, such as
    ``default_member_permissions``, which discord.py sends as an integer and other libraries as
    a string). Each such schema is wrapped in ``INT_STRING``.
    """
    if isinstance(node, list):
        return [accept_int_strings(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "oneOf" and isinstance(value, list) and any(_takes(b, "string") for b in value):
            # A union with a string branch of its own (``nonce``: int or string) keeps its
            # integers strict, or a string of digits would match two branches of a oneOf.
            out[key] = [_int_strict(b) for b in value]
        else:
            out[key] = accept_int_strings(value)
    if _takes(out, "integer"):
        return {INT_STRING: out}
    return out


def _takes(schema: Any, kind: str) -> bool:
    types = schema.get("type") if isinstance(schema, dict) else None
    return types == kind or (isinstance(types, list) and kind in types)


def _int_strict(branch: Any) -> Any:
    converted = accept_int_strings(branch)
    if isinstance(converted, dict) and set(converted) == {INT_STRING}:
        return converted[INT_STRING]
    return converted


def response_amendments(schemas: Mapping[str, Any]) -> dict[str, Any]:
    """Where Discord's answers differ from its spec, the fake answers as Discord does.

    A field error of a 50035 answer carries a string code (``{"code": "BASE_TYPE_REQUIRED",
    "message": ...}``, as Discord's docs show and its API sends); the spec reuses the top-level
    ``Error`` (an integer code) for it.
    """
    inner = dict(schemas["InnerErrors"])
    field_error = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }
    inner["properties"] = {**inner["properties"], "_errors": {"type": "array", "items": field_error}}
    return {"InnerErrors": inner}


def _discriminator(branch: Any, document: dict[str, Any]) -> Any:
    """The single value a union branch requires of its ``type`` field (``{"type": {"enum": [2]}}``,
    required), or None when it has no such tag."""
    if isinstance(branch, dict) and "$ref" in branch:
        ref = branch["$ref"]
        if not ref.startswith("#/components/schemas/"):
            return None
        branch = document["components"]["schemas"].get(ref.rsplit("/", 1)[1])
    if not isinstance(branch, dict) or "type" not in branch.get("required", ()):
        return None
    tag = branch.get("properties", {}).get("type", {})
    if "const" in tag:
        return tag["const"]
    enum = tag.get("enum")
    return enum[0] if isinstance(enum, list) and len(enum) == 1 else None


_CONST_KEYS = {"const", "title", "description"}


def fast_unions(node: Any, document: dict[str, Any]) -> Any:
    """The same schemas, with two kinds of union that jsonschema is slow at made direct.

    jsonschema checks every branch of a ``oneOf``/``anyOf`` in full; a message has a dozen such
    unions (each component kind, nullable fields), which made validating one answer cost ~5 ms.
    - ``oneOf: [{"const": 0}, {"const": 1}, ...]`` (every enumeration: 37 message types) becomes
      ``enum: [0, 1, ...]``.
    - ``oneOf: [{"type": "null"}, X]`` (how the spec writes "nullable") becomes ``NULLABLE: X``.
    - A union whose branches each require a distinct ``type`` tag (components, interaction
      metadata, callback bodies) becomes ``TAGGED: {tag: branch}``.
    The two are keywords of the fake's ``Validator`` that check the one branch that applies.
    They accept what the union accepts (its branches are disjoint), and an error names the
    field inside the branch rather than "not valid under any of the given schemas".
    """
    if isinstance(node, list):
        return [fast_unions(item, document) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: fast_unions(value, document) for key, value in node.items()}
    for kind in ("oneOf", "anyOf"):
        branches = out.get(kind)
        if not isinstance(branches, list) or len(branches) < 2:
            continue
        if all(isinstance(b, dict) and "const" in b and set(b) <= _CONST_KEYS for b in branches):
            del out[kind]
            out["enum"] = [b["const"] for b in branches]
            break
        nulls = [b for b in branches if b == {"type": "null"}]
        rest = [b for b in branches if b != {"type": "null"}]
        if nulls and len(rest) == 1:
            del out[kind]
            out[NULLABLE] = rest[0]
            break
        tags = [_discriminator(b, document) for b in rest]
        if nulls or None in tags or len({json.dumps(t) for t in tags}) != len(tags):
            continue
        del out[kind]
        out[TAGGED] = {json.dumps(t): b for t, b in zip(tags, rest, strict=True)}
        break
    return out


# Two keywords of the fake's own for the unions above: each descends into one branch only.
NULLABLE = "x-fake-nullable"
TAGGED = "x-fake-tagged-union"


def _nullable(validator: Any, branch: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if instance is not None:
        yield from validator.descend(instance, branch)


def _tagged(
    validator: Any, branches: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        yield ValidationError(
            f"{instance!r} is not of type 'object'", validator="type", validator_value="object"
        )
        return
    tags = [json.loads(t) for t in branches]
    if "type" not in instance:
        yield ValidationError("'type' is a required property", validator="required", validator_value=["type"])
        return
    branch = branches.get(json.dumps(instance["type"]))
    if branch is None:
        yield ValidationError(
            f"{instance['type']!r} is not one of {tags}",
            validator="enum",
            validator_value=tags,
            path=["type"],
        )
        return
    yield from validator.descend(instance, branch)


INT_STRING = "x-fake-int-or-digits"


def _int_string(validator: Any, schema_of: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if isinstance(instance, str) and re.fullmatch(r"-?[0-9]+", instance):
        instance = int(instance)
    yield from validator.descend(instance, schema_of)


Validator = validators.extend(
    Draft202012Validator, {NULLABLE: _nullable, TAGGED: _tagged, INT_STRING: _int_string}
)


_SCHEMA_REF = "#/components/schemas/"


def inline_refs(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each ``{"$ref": "#/components/schemas/X"}`` replaced by X itself, unless
    X is part of a cycle (``ErrorDetails``, containers of components): a ``$ref`` costs jsonschema
    a registry lookup on every use. The copies are shared, not duplicated."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    done: dict[str, Any] = {}
    open_: set[str] = set()
    cyclic: set[str] = set()

    def refs_in(node: Any, out: set[str]) -> set[str]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
                out.add(ref[len(_SCHEMA_REF) :])
            for value in node.values():
                refs_in(value, out)
        elif isinstance(node, list):
            for value in node:
                refs_in(value, out)
        return out

    graph = {name: refs_in(schema, set()) for name, schema in schemas.items()}
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for nxt in graph.get(name, ()):
            if state.get(nxt) == 1:
                cyclic.update(stack[stack.index(nxt) :])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if len(node) == 1 and isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            name = ref[len(_SCHEMA_REF) :]
            if name in schemas and name not in cyclic:
                return schema(name)
        return {key: walk(value) for key, value in node.items()}

    def schema(name: str) -> Any:
        if name not in done:
            assert name not in open_, name
            open_.add(name)
            done[name] = walk(schemas[name])
            open_.discard(name)
        return done[name]

    components = document["components"]
    new_schemas = {name: (schema(name) if name not in cyclic else walk(schemas[name])) for name in schemas}
    rest = {k: walk(v) for k, v in document.items() if k != "components"}
    return {**rest, "components": {**components, "schemas": new_schemas}}


class DiscordSpec:
    """The parsed spec, its registry and its routes (one per process: see :func:`load_spec`)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        schemas = document["components"]["schemas"]
        fast = fast_unions(document, document)
        requests = inline_refs(
            accept_int_strings(_amend(fast, request_amendments(fast["components"]["schemas"])))
        )
        responses = inline_refs(_amend(fast, response_amendments(schemas)))
        self.registry: Registry[Any] = Registry().with_resources(
            [
                (REQUEST_URI, Resource.from_contents(requests, default_specification=DRAFT202012)),
                (RESPONSE_URI, Resource.from_contents(responses, default_specification=DRAFT202012)),
            ]
        )
        self._resolver = self.registry.resolver(REQUEST_URI)
        routes: list[tuple[re.Pattern[str], str, dict[str, SpecRoute]]] = []
        for template, item in document["paths"].items():
            parts = re.split(r"(\{[^}]+\})", template)
            rx = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
            ops = {m.upper(): SpecRoute(self, template, m) for m in METHODS if m in item}
            routes.append((re.compile(f"^{rx}$"), template, ops))
        # Literal segments (``@me``, ``@original``) win over placeholders, as on Discord.
        routes.sort(key=lambda r: r[1].count("{"))
        self._routes = routes

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        if "$ref" in schema:
            resolved: Mapping[str, Any] = self._resolver.lookup(schema["$ref"]).contents
            return resolved
        return schema

    def match(self, method: str, path: str) -> tuple[SpecRoute | None, dict[str, str], bool]:
        """(operation, path params, path known for another method)."""
        other = False
        for rx, _template, ops in self._routes:
            m = rx.match(path)
            if m is None:
                continue
            op = ops.get(method.upper())
            if op is None:
                other = True
                continue
            return op, m.groupdict(), False
        return None, {}, other


@functools.cache
def load_spec() -> DiscordSpec:
    """The vendored spec, parsed once per process (about 1.2 MB of JSON)."""
    with SPEC_FILE.open(encoding="utf-8") as f:
        return DiscordSpec(json.load(f))
