"""The emulator's HTTP server (aiohttp) and the ``Emulator`` class that runs it.

API routes (the contract; each counts as one request against the key's window):
    POST /graphql                       GraphQL (generate, animateImage, job)
    POST /v1/image_to_video             REST create, flat body
    GET  /v1/image_to_video/{id}        REST status read
Not counted:
    GET  /outputs/{id}.mp4              the "CDN" (no auth)
    GET  /healthz
    GET  /_emulator/state, POST /_emulator/faults, POST /_emulator/credits   (emulator only)

Every API answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (Unix seconds); a 429 adds ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from graphql import GraphQLError, graphql

from emulator.accounts import Account, Counters, RateDecision, RateWindow
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, bad_input, format_seconds
from emulator.faults import FAULT_429, FAULT_500, FAULT_500_AFTER, FAULT_SLOW, Faults, RequestFault
from emulator.jobs import REST_PATHS, is_job_id, parse_create
from emulator.schema import GraphQLContext, build_schema
from emulator.service import JobService
from shared import contract

log = logging.getLogger(__name__)

# A data: URI of a full-size image is ~4/3 of MAX_IMAGE_BYTES, plus the JSON around it.
MAX_BODY_BYTES = contract.MAX_IMAGE_BYTES * 4 // 3 + 256 * 1024

BANNER = (
    "Doitong API emulator: a local stand-in for the Doitong Runway image-to-video API, "
    "not a model (it pans and zooms your image into a real MP4), listening on {url}"
)


@dataclass(slots=True)
class Reply:
    """An API answer before the rate-limit headers are added."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None
    codes: tuple[str, ...] = ()  # the error codes in it, if any
    graphql_error: bool = False  # an error answer on /graphql (may go out as HTTP 200)


def _error_reply(error: ApiError, time_scale: float, *, graphql_route: bool) -> Reply:
    return Reply(
        status=error.http_status,
        body=error.body(time_scale),
        retry_after=error.retry_after,
        codes=(error.code,),
        graphql_error=graphql_route,
    )


def _candidate_keys(request: web.Request) -> list[str]:
    keys: list[str] = []
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    api_key = request.headers.get(contract.API_KEY_HEADER, "").strip()
    if api_key:
        keys.append(api_key)
    return keys


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise bad_input(f"Request body too large (at most {MAX_BODY_BYTES} bytes)") from exc
    if not raw.strip():
        raise bad_input("Request body is empty: expected JSON")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_input(f"Malformed JSON body: {exc}") from exc


class Emulator:
    """A running stand-in for the Doitong API. Use ``async with Emulator(cfg) as emu:`` or
    ``await start()`` / ``await stop()`` inside a running event loop."""

    def __init__(self, config: EmulatorConfig) -> None:
        config.validate()
        self.config = config
        self.faults = Faults(config)
        self._schema = build_schema()
        self._anon_window = RateWindow(
            contract.PLANS["free"].requests_per_minute, contract.RATE_WINDOW_SECONDS * config.time_scale
        )
        self._anon_counters = Counters()
        self._responses: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._service: JobService | None = None
        self._owns_output_dir = False
        self.output_dir: Path = config.output_dir or Path()
        self.port = 0
        self.base_url = ""
        self.public_url = ""

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def service(self) -> JobService:
        if self._service is None:
            raise RuntimeError("the emulator is not running")
        return self._service

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("already started")
        cfg = self.config
        if cfg.output_dir is None:
            self.output_dir = Path(tempfile.mkdtemp(prefix="doitong-emulator-"))
            self._owns_output_dir = True
        else:
            self.output_dir = cfg.output_dir
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession()
        self._service = JobService(
            cfg, output_dir=self.output_dir, public_url="", session=self._session, faults=self.faults
        )
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._count_middleware])
        app.add_routes(
            [
                web.post(contract.GRAPHQL_PATH, self._handle_graphql),
                web.post(contract.REST_CREATE_PATH, self._handle_rest_create),
                web.get(contract.REST_JOB_PATH, self._handle_rest_get),
                web.get(contract.OUTPUTS_PATH, self._handle_output),
                web.get("/healthz", self._handle_health),
                web.get("/_emulator/state", self._handle_state),
                web.post("/_emulator/faults", self._handle_faults),
                web.post("/_emulator/credits", self._handle_credits),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, cfg.host, cfg.port)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        address = self._runner.addresses[0]
        self.port = int(address[1])
        host = cfg.host if cfg.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        self.base_url = f"http://{host}:{self.port}"
        self.public_url = (cfg.public_url or self.base_url).rstrip("/")
        self._service.public_url = self.public_url
        log.info("emulator listening on %s (outputs in %s)", self.base_url, self.output_dir)

    async def stop(self) -> None:
        """Stop serving, cancel job and webhook tasks, close the HTTP session, and delete the
        output directory if it was a temporary one. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._service is not None:
            await self._service.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        if self._owns_output_dir:
            shutil.rmtree(self.output_dir, ignore_errors=True)
            self._owns_output_dir = False

    @property
    def banner(self) -> str:
        return BANNER.format(url=self.base_url)

    # --- Python controls (the admin routes call these) -------------------------------------

    def stats(self) -> dict[str, Any]:
        state = self.service.state()
        state["anonymous"] = {
            "requests": self._anon_counters.requests,
            "rate_limited": self._anon_counters.rate_limited,
        }
        state["responses_by_status"] = {str(k): v for k, v in sorted(self._responses.items())}
        state["time_scale"] = self.config.time_scale
        state["base_url"] = self.base_url
        return state

    def inject(self, faults: Iterable[str]) -> list[str]:
        """Queue faults (see ``emulator.faults``); ValueError on an unknown one."""
        return self.faults.inject(faults)

    def set_credits(self, key: str, credits: int) -> None:
        """Set the balance of the account with this API key (or label)."""
        self.service.set_credits(key, credits)

    async def wait_idle(self) -> None:
        """Wait until every job has ended and its webhook was sent (or given up); bound it
        with ``asyncio.timeout`` if needed."""
        await self.service.wait_idle()

    # --- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def _count_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        api = request.path == contract.GRAPHQL_PATH or request.path.startswith(contract.REST_CREATE_PATH)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if api:
                self._responses[exc.status] += 1
            raise
        if api:
            self._responses[response.status] += 1
        return response

    def _rate_headers(self, decision: RateDecision) -> dict[str, str]:
        scale = self.config.time_scale
        return {
            contract.RATE_LIMIT_LIMIT_HEADER: str(decision.limit),
            contract.RATE_LIMIT_REMAINING_HEADER: str(decision.remaining),
            contract.RATE_LIMIT_RESET_HEADER: str(format_seconds(time.time() + decision.reset_in, scale)),
        }

    def _respond(self, reply: Reply, decision: RateDecision, counters: Counters) -> web.Response:
        headers = self._rate_headers(decision)
        if contract.CODE_RATE_LIMITED in reply.codes:
            counters.rate_limited += 1
            if reply.retry_after is not None:
                headers["Retry-After"] = str(format_seconds(reply.retry_after, self.config.time_scale))
        status = reply.status
        # Some GraphQL servers send errors in a 200: on request, do the same.
        if (
            reply.graphql_error
            and status != 200
            and (self.config.graphql_errors_200 or self.faults.take_graphql_200())
        ):
            status = 200
        return web.json_response(reply.body, status=status, headers=headers)

    async def _api(
        self,
        request: web.Request,
        handler: Callable[[web.Request, Account], Awaitable[Reply]],
        *,
        graphql_route: bool,
    ) -> web.Response:
        """The pipeline every API request goes through: faults, auth, the rate window, the
        handler, then the post-effect faults."""
        service = self.service
        scale = self.config.time_scale
        fault: RequestFault | None = self.faults.next_request()
        account: Account | None = None
        for key in _candidate_keys(request):
            account = service.account_for(key)
            if account is not None:
                break
        window = account.window if account is not None else self._anon_window
        counters = account.counters if account is not None else self._anon_counters
        now = time.monotonic()
        counters.requests += 1  # every API request that arrived, faulted or not

        if fault is not None and fault.kind == FAULT_500:
            error = ApiError(contract.CODE_INTERNAL, "Internal server error, please retry (injected fault)")
            reply = _error_reply(error, scale, graphql_route=False)
            return self._respond(reply, window.peek(now), counters)
        if fault is not None and fault.kind == FAULT_429:
            decision = window.exhaust(now)
            error = ApiError(
                contract.CODE_RATE_LIMITED,
                "Rate limit exceeded, please retry later (injected fault)",
                retry_after=decision.reset_in,
            )
            return self._respond(_error_reply(error, scale, graphql_route=graphql_route), decision, counters)

        decision = window.hit(now)
        if account is None:
            missing = not _candidate_keys(request)
            error = ApiError(
                contract.CODE_UNAUTHENTICATED,
                "Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                if missing
                else "Invalid API key",
            )
            return self._respond(_error_reply(error, scale, graphql_route=graphql_route), decision, counters)
        if not decision.allowed:
            error = ApiError(
                contract.CODE_RATE_LIMITED,
                f"Rate limit exceeded: {decision.limit} requests per minute on the "
                f"{account.limits.name} plan",
                retry_after=decision.reset_in,
                limit="requests_per_minute",
            )
            return self._respond(_error_reply(error, scale, graphql_route=graphql_route), decision, counters)

        try:
            reply = await handler(request, account)
        except ApiError as exc:
            reply = _error_reply(exc, scale, graphql_route=graphql_route)

        if fault is not None and fault.kind == FAULT_500_AFTER:
            error = ApiError(contract.CODE_INTERNAL, "Internal server error, please retry (injected fault)")
            reply = _error_reply(error, scale, graphql_route=False)
        response = self._respond(reply, decision, counters)
        if fault is not None and fault.kind == FAULT_SLOW:
            await asyncio.sleep(fault.seconds)
        return response

    # --- GraphQL ---------------------------------------------------------------------------

    async def _handle_graphql(self, request: web.Request) -> web.Response:
        return await self._api(request, self._graphql, graphql_route=True)

    def _format_graphql_error(self, error: GraphQLError) -> tuple[dict[str, Any], ApiError]:
        original = error.original_error
        if isinstance(original, ApiError):
            api = original
        elif original is not None and not isinstance(original, GraphQLError):
            log.error("resolver error", exc_info=original)
            api = ApiError(contract.CODE_INTERNAL, "Internal server error, please retry")
        else:  # a syntax, validation or variable-coercion error
            api = ApiError(contract.CODE_BAD_USER_INPUT, error.message)
        formatted: dict[str, Any] = {"message": api.message}
        if error.locations:
            formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
        if error.path:
            formatted["path"] = list(error.path)
        formatted["extensions"] = api.extensions_dict(self.config.time_scale)
        return formatted, api

    async def _graphql(self, request: web.Request, account: Account) -> Reply:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise bad_input("Expected a JSON object with 'query' (and optionally 'variables')")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise bad_input("Missing 'query': expected a GraphQL document string")
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise bad_input("'variables' must be a JSON object")
        operation = body.get("operationName")
        if operation is not None and not isinstance(operation, str):
            raise bad_input("'operationName' must be a string")
        context = GraphQLContext(
            service=self.service,
            account=account,
            idempotency_key=request.headers.get(contract.IDEMPOTENCY_HEADER) or None,
        )
        result = await graphql(
            self._schema, query, variable_values=variables, operation_name=operation, context_value=context
        )
        if not result.errors:
            return Reply(200, {"data": result.data})
        formatted = [self._format_graphql_error(e) for e in result.errors]
        apis = [api for _, api in formatted]
        out: dict[str, Any] = {"errors": [f for f, _ in formatted]}
        if result.data is not None:
            out["data"] = result.data
        retry_after = next((a.retry_after for a in apis if a.retry_after is not None), None)
        return Reply(
            status=apis[0].http_status,
            body=out,
            retry_after=retry_after,
            codes=tuple(a.code for a in apis),
            graphql_error=True,
        )

    # --- REST ------------------------------------------------------------------------------

    async def _handle_rest_create(self, request: web.Request) -> web.Response:
        return await self._api(request, self._rest_create, graphql_route=False)

    async def _rest_create(self, request: web.Request, account: Account) -> Reply:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise bad_input("Expected a JSON object with the job's parameters")
        create = parse_create(body, REST_PATHS)
        job = await self.service.create(
            account, create, request.headers.get(contract.IDEMPOTENCY_HEADER) or None
        )
        return Reply(200, {"data": {contract.REST_RESULT_FIELD: job.to_api()}})

    async def _handle_rest_get(self, request: web.Request) -> web.Response:
        return await self._api(request, self._rest_get, graphql_route=False)

    async def _rest_get(self, request: web.Request, account: Account) -> Reply:
        job_id = request.match_info["id"]
        job = self.service.read(account, job_id) if is_job_id(job_id) else None
        if job is None:
            raise ApiError(contract.CODE_NOT_FOUND, f"No job with id {job_id!r} for this API key")
        return Reply(200, {"data": {contract.REST_RESULT_FIELD: job.to_api()}})

    # --- outputs, health, admin --------------------------------------------------------------

    async def _handle_output(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["id"]
        path = self.service.completed_output(job_id) if is_job_id(job_id) else None
        if path is None:
            raise web.HTTPNotFound(text="no such video\n")
        return web.FileResponse(
            path, headers={"Content-Type": "video/mp4", "Cache-Control": "public, max-age=86400"}
        )

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "emulator": True})

    async def _handle_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _admin_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text=f"malformed JSON: {exc}\n") from exc
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="expected a JSON object\n")
        return body

    async def _handle_faults(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        if body.get("clear"):
            self.faults.clear()
        queue = body.get("queue", [])
        if not isinstance(queue, list) or not all(isinstance(q, str) for q in queue):
            raise web.HTTPBadRequest(text="'queue' must be a list of fault names\n")
        try:
            queued = self.inject(queue)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        return web.json_response({"queued": queued, "pending": self.faults.pending()})

    async def _handle_credits(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        ident = body.get("key") or body.get("label")
        credits = body.get("credits")
        if not isinstance(ident, str) or not isinstance(credits, int) or isinstance(credits, bool):
            raise web.HTTPBadRequest(text='expected {"key": str, "credits": int}\n')
        try:
            account = self.service.set_credits(ident, credits)
        except KeyError:
            raise web.HTTPNotFound(text="unknown account\n") from None
        return web.json_response({"label": account.label, "credits": account.credits})
