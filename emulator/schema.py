"""The GraphQL schema of the emulated API, executed by graphql-core (real parsing, validation,
variables, aliases, ``__typename``).

    type Query    { job(id: ID!): Job }
    type Mutation { generate(input: GenerateInput!): Job
                    animateImage(input: ImageAnimationInput!): Job }

Options are plain Strings/Ints (not enums) so a bad value gets the API's own 400
BAD_USER_INPUT naming the field and the allowed values. Resolvers raise ``ApiError``; the
server turns errors into the contract's format and HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    ValueNode,
)
from graphql.utilities import value_from_ast_untyped

from emulator.errors import bad_input
from emulator.jobs import ANIMATE_PATHS, GENERATE_PATHS, parse_create
from shared import contract

if TYPE_CHECKING:
    from emulator.accounts import Account
    from emulator.service import JobService


@dataclass(slots=True)
class GraphQLContext:
    """What one HTTP request gives its resolvers."""

    service: JobService
    account: Account
    idempotency_key: str | None


def _parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    return value_from_ast_untyped(node, variables)


JSONScalar = GraphQLScalarType(
    name="JSON",
    description="Any JSON value (job metadata: {duration, width, height}).",
    serialize=lambda value: value,
    parse_value=lambda value: value,
    parse_literal=_parse_json_literal,
)

JobType = GraphQLObjectType(
    name="Job",
    fields={
        "id": GraphQLField(GraphQLNonNull(GraphQLID)),
        "status": GraphQLField(
            GraphQLNonNull(GraphQLString), description="queued, processing, completed, failed"
        ),
        "type": GraphQLField(GraphQLString),
        "provider": GraphQLField(GraphQLString),
        "service": GraphQLField(GraphQLString),
        "url": GraphQLField(GraphQLString, description="The MP4's URL once completed, else null"),
        "metadata": GraphQLField(JSONScalar, description="{duration, width, height} once completed"),
        "creditCost": GraphQLField(GraphQLInt, description="Credits billed; 0 for a failed (refunded) job"),
        "createdAt": GraphQLField(GraphQLString, description="ISO-8601 UTC"),
        "completedAt": GraphQLField(GraphQLString, description="ISO-8601 UTC, once completed or failed"),
        "error": GraphQLField(GraphQLString, description="Why the job failed"),
        "webhookUrl": GraphQLField(GraphQLString),
        "duration": GraphQLField(GraphQLInt),
        "aspectRatio": GraphQLField(GraphQLString),
        "motionIntensity": GraphQLField(GraphQLString),
        "version": GraphQLField(GraphQLString),
        "prompt": GraphQLField(GraphQLString),
    },
)

_OPTION_FIELDS: dict[str, GraphQLInputField] = {
    "duration": GraphQLInputField(GraphQLInt),
    "motionIntensity": GraphQLInputField(GraphQLString),
    "aspectRatio": GraphQLInputField(GraphQLString),
    "version": GraphQLInputField(GraphQLString),
    "webhookUrl": GraphQLInputField(GraphQLString),
}

GenerateMediaInput = GraphQLInputObjectType(
    name="GenerateMediaInput",
    fields={
        "imageUrl": GraphQLInputField(GraphQLString),
        "image": GraphQLInputField(GraphQLString, description="Alias of imageUrl"),
        "prompt": GraphQLInputField(GraphQLString),
    },
)

GenerateOptions = GraphQLInputObjectType(name="GenerateOptions", fields=dict(_OPTION_FIELDS))

GenerateInput = GraphQLInputObjectType(
    name="GenerateInput",
    fields={
        "type": GraphQLInputField(GraphQLNonNull(GraphQLString)),
        "provider": GraphQLInputField(GraphQLNonNull(GraphQLString)),
        "input": GraphQLInputField(GraphQLNonNull(GenerateMediaInput)),
        "options": GraphQLInputField(GenerateOptions),
    },
)

ImageAnimationInput = GraphQLInputObjectType(
    name="ImageAnimationInput",
    fields={
        "service": GraphQLInputField(GraphQLNonNull(GraphQLString)),
        "imageUrl": GraphQLInputField(GraphQLString),
        "image": GraphQLInputField(GraphQLString, description="Alias of imageUrl"),
        "prompt": GraphQLInputField(GraphQLString),
        **_OPTION_FIELDS,
    },
)


async def resolve_generate(
    _root: Any, info: GraphQLResolveInfo[GraphQLContext], input: dict[str, Any]
) -> dict[str, Any]:
    ctx: GraphQLContext = info.context
    if input.get("type") != contract.GENERATE_TYPE:
        raise bad_input(
            f"Invalid value {input.get('type')!r} for input.type: "
            f"allowed values are {contract.GENERATE_TYPE}",
            field="input.type",
            allowed=[contract.GENERATE_TYPE],
        )
    raw: dict[str, Any] = {"service": input.get("provider")}
    raw.update(input.get("input") or {})
    raw.update(input.get("options") or {})
    request = parse_create(raw, GENERATE_PATHS)
    job = await ctx.service.create(ctx.account, request, ctx.idempotency_key)
    return job.to_api()


async def resolve_animate_image(
    _root: Any,
    info: GraphQLResolveInfo[GraphQLContext],
    input: dict[str, Any],
) -> dict[str, Any]:
    ctx: GraphQLContext = info.context
    request = parse_create(dict(input), ANIMATE_PATHS)
    job = await ctx.service.create(ctx.account, request, ctx.idempotency_key)
    return job.to_api()


def resolve_job(_root: Any, info: GraphQLResolveInfo[GraphQLContext], id: str) -> dict[str, Any] | None:
    ctx: GraphQLContext = info.context
    job = ctx.service.read(ctx.account, id)
    return None if job is None else job.to_api()


def build_schema() -> GraphQLSchema:
    query = GraphQLObjectType(
        name="Query",
        fields={
            "job": GraphQLField(
                JobType,
                args={"id": GraphQLArgument(GraphQLNonNull(GraphQLID))},
                resolve=resolve_job,
                description="A job of the calling key; null if unknown or another key's",
            ),
        },
    )
    mutation = GraphQLObjectType(
        name="Mutation",
        fields={
            "generate": GraphQLField(
                JobType,
                args={"input": GraphQLArgument(GraphQLNonNull(GenerateInput))},
                resolve=resolve_generate,
            ),
            "animateImage": GraphQLField(
                JobType,
                args={"input": GraphQLArgument(GraphQLNonNull(ImageAnimationInput))},
                resolve=resolve_animate_image,
            ),
        },
    )
    return GraphQLSchema(query=query, mutation=mutation)
