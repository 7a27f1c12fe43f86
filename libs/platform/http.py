"""The HTTP app factory shared by the services: RFC 9457 problem details, bearer auth,
/healthz, /readyz, /metrics, request metrics, request ids; every DomainError is rendered here, with the
status and title ``libs/platform/errors.py`` gives its kind."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.i18n.language import TAGS, Language, negotiate
from libs.i18n.problems import P_, says
from libs.platform.auth import InvalidToken, Principal, Role, Tokens
from libs.platform.db import Database
from libs.platform.errors import DomainError
from libs.platform.fields import Text
from libs.platform.metrics import HTTP_LATENCY, HTTP_REQUESTS
from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

PROBLEM_BASE = "https://warmbee.dev/problems/"
DATABASE_UNAVAILABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionFailureError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,
)
PROBLEM_JSON = "application/problem+json"

REQUEST_ID_HEADER = "X-Request-ID"
IDEMPOTENCY_KEY = "Idempotency-Key"
# A caller's request id is logged as sent only when it is short and plain; otherwise we issue our own.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_CURSOR = re.compile(r"[0-7]?[0-9a-f]{1,15}")  # 0 to 2**63 - 1 in hex, as encode_cursor writes it

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def problem_response(
    error: DomainError, instance: str | None = None, status: int | None = None, language: Language = "en"
) -> JSONResponse:
    """``error`` as application/problem+json, its title and detail in ``language``; ``status`` only where
    Starlette's own status has no kind."""
    status = status or error.status
    title, detail = error.words(language)
    body: dict[str, Any] = {"type": PROBLEM_BASE + error.kind, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body |= error.extra
    headers = {"Content-Language": TAGS[language], "Vary": "Accept-Language"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(retry_after := error.extra.get("retry_after_s"), int):
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response entries for the problems an endpoint can answer."""
    return {
        s: {
            "description": "problem details (RFC 9457)",
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for s in statuses
    }


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _language_of(request: Request) -> Language:
    return negotiate(request.headers.get("accept-language"))


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _problem(request: Request, exc: DomainError) -> JSONResponse:
        return problem_response(exc, request.url.path, language=_language_of(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_path(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem_response(
            DomainError(detail, kind="invalid-request", errors=errors),
            request.url.path,
            language=_language_of(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            return problem_response(exc.problem(), request.url.path, language=_language_of(request))
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's own word for a body that is not JSON: the contract answers 422 and names the body.
            return problem_response(
                DomainError("body: is not valid JSON; send a JSON object", kind="malformed-json"),
                request.url.path,
                language=_language_of(request),
            )
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        error = DomainError(f"{request.method} {request.url.path}: {exc.detail}", kind=kind, title=str(exc.detail))
        response = problem_response(error, request.url.path, exc.status_code, _language_of(request))
        # Starlette's exception carries the headers the status needs (405's Allow, RFC 9110 15.5.6).
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request, response.headers.get("Allow", ""))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DATABASE_UNAVAILABLE):
            # The database restarts or fails over: nothing was accepted; the caller retries shortly.
            log.warning("http.database_unavailable", path=request.url.path, error=type(exc).__name__)
            response = problem_response(
                DomainError(
                    "the database is not reachable at the moment; nothing was done, retry in a few seconds",
                    kind="database-unavailable",
                ),
                request.url.path,
                language=_language_of(request),
            )
            response.headers["Retry-After"] = "2"
            return response
        log.exception("http.unhandled", path=request.url.path)
        return _internal_error(request)


def allowed_methods(request: Request, named: str) -> str:
    """The Allow header of a 405: every method some route of this path answers, with those the refusing
    route ``named``. Starlette's router names only the first route whose path matched, and FastAPI
    declares GET and POST of one path as two routes."""
    methods = {m.strip() for m in named.split(",") if m.strip()}
    for route in _flat(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            methods |= {"GET", "HEAD"}
        methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _flat(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes of an app, those of its included routers among them: FastAPI keeps an included router
    as one entry (with no methods of its own). Our routers are included without a prefix, so their
    routes match the request's path as they stand."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def _internal_error(request: Request) -> JSONResponse:
    return problem_response(
        DomainError("something failed on our side; retry later", kind="internal"),
        request.url.path,
        language=_language_of(request),
    )


_bearer = HTTPBearer(auto_error=False)


async def authenticate(  # async: a plain def would cost every request a hop to the thread pool
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise DomainError(
            says(P_("send 'Authorization: Bearer <token>'; mint one locally with `warmbee token`")),
            kind="unauthenticated",
        )
    tokens: Tokens = request.app.state.tokens
    try:
        return await tokens.verify(credentials.credentials)
    except InvalidToken as exc:
        raise DomainError(
            says(P_("the bearer token was refused: {error}"), error=str(exc)), kind="invalid-token"
        ) from exc


Caller = Annotated[Principal, Depends(authenticate)]


async def reader_language(
    response: Response,
    accept_language: Annotated[
        str | None,
        Header(
            alias="Accept-Language",
            description="zh or zh-CN for Chinese; anything else, or none, for English",
            examples=["zh-CN"],
        ),
    ] = None,
) -> Language:
    """The language the reader asked for; the answer says which it is written in."""
    language = negotiate(accept_language)
    response.headers["Content-Language"] = TAGS[language]
    response.headers["Vary"] = "Accept-Language"
    return language


# What a route that writes for people takes: reasons and problems in the reader's language.
ReaderLanguage = Annotated[Language, Depends(reader_language)]


# async, though they await nothing: FastAPI runs a plain def dependency in its thread pool, and that hop
# (and the GIL passed back and forth with the pool's thread) cost a balance read more than its query did.
async def _database(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


# What a module-level router's routes take: the service's database and settings, set by its bootstrap.
Db = Annotated[Database, Depends(_database)]
AppSettings = Annotated[Settings, Depends(_settings)]
# Every list of the contract takes `limit` (1-500) and answers {"items", "next_cursor"}.
PageLimit = Annotated[int, Query(ge=1, le=500, description="items per page, 1 to 500")]


class _CursorFormat:
    """A page cursor as encode_cursor writes it, refused otherwise with the fix; the document gives the
    pattern, so a client (and the fuzzer holding us to the document) knows which strings are cursors."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_check_cursor, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "pattern": f"^{_CURSOR.pattern}$", "maxLength": 16}


def _check_cursor(value: str) -> str:
    if not _CURSOR.fullmatch(value):
        raise PydanticCustomError("invalid_cursor", "pass the next_cursor of the previous page unchanged")
    return value


PageCursor = Annotated[
    Annotated[str, _CursorFormat()] | None, Query(description="the next_cursor of the previous page")
]


# The Idempotency-Key header of every write that takes one (the document marks it required).
IdempotencyKey = Annotated[Text | None, Header(alias="Idempotency-Key", max_length=200)]


def key_required(idempotency_key: str | None, per: str) -> str:
    """The request's Idempotency-Key, or the problem that says what to send (``per``: one key per what)."""
    if not idempotency_key:
        raise DomainError(
            f"Idempotency-Key: send a unique key per {per}, and the same key when retrying",
            kind="idempotency-key-required",
        )
    return idempotency_key


def require(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise DomainError(
            says(
                P_("this needs the role {allowed}; the token's role is {role}"),
                allowed=allowed,
                role=principal.role.value,
            ),
            kind="forbidden",
        )


def create_app(
    settings: Settings,
    service: str,
    title: str,
    version: str,
    readiness: ReadinessCheck,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    description: str = "",
    max_body_bytes: int | None = None,
    too_large_hint: str = "send a smaller body",
    db: Database | None = None,
) -> FastAPI:
    """The app of one service. ``max_body_bytes``: its request body limit (settings.max_api_body_bytes
    unless given), and ``too_large_hint`` what its 413 tells the caller to do instead."""
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = Tokens(settings)  # its cache of the provider's keys lives as long as the app
    app.state.db = db
    install_problem_handlers(app)

    # Inside MeasureRequests, so a 413 is counted and carries its request id like any answer.
    app.add_middleware(LimitBody, limit=max_body_bytes or settings.max_api_body_bytes, hint=too_large_hint)
    app.add_middleware(MeasureRequests, service=service)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Its database (and broker, where used) are reachable",
        responses=problem_responses(503),
    )
    async def readyz() -> JSONResponse:
        checks = await readiness()
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem_response(DomainError(f"not reachable: {failing}", kind="not-ready", checks=checks), "/readyz")

    _validation_errors_are_problems(app)

    # The pages (rider, partner, operator) call the APIs from their own origin, with a bearer token
    # (no cookies, so no credentials mode). Added last, so it is the outermost layer and answers preflights.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "PUT"],
        allow_headers=["Authorization", "Content-Type", "Accept-Language", IDEMPOTENCY_KEY, REQUEST_ID_HEADER],
        expose_headers=[REQUEST_ID_HEADER, "Retry-After", "Content-Disposition"],
        max_age=600,
    )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class BodyTooLarge(StarletteHTTPException):
    """A request body over the service's limit. An HTTPException, so that FastAPI, reading the body for a
    route, passes it on (it turns any other error raised there into a 400) and the handler renders it."""

    def __init__(self, limit: int, hint: str) -> None:
        super().__init__(413, "Request body too large")
        self.limit = limit
        self.hint = hint

    def problem(self) -> DomainError:
        return DomainError(f"body: is larger than {self.limit} bytes; {self.hint}", kind="body-too-large")


class LimitBody:
    """413 for a request body over the service's limit, before anything reads it whole: at once when
    Content-Length says so (the body is never read), else as soon as the bytes received pass the limit (a
    chunked body). It wraps the whole app, so it runs before authentication and before FastAPI, which
    reads a body whole to parse it."""

    def __init__(self, app: ASGIApp, limit: int, hint: str) -> None:
        self._app = app
        self._limit = limit
        self._hint = hint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        # isascii: str.isdigit accepts "²"; the length check keeps int() away from a 10,000-digit header.
        if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > self._limit):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._limit:
                    raise BodyTooLarge(self._limit, self._hint)
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counting_receive, noting_send)
        except BodyTooLarge:
            # Read outside a route's exception handlers (a middleware, say): answered here all the same.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No "Connection: close": the server would close while the client still sends, and the client,
        # reset, would never read the 413. The server discards the rest of the body; nothing holds it.
        response = problem_response(BodyTooLarge(self._limit, self._hint).problem(), scope["path"])
        await response(scope, receive, send)


class MeasureRequests:
    """Request metrics, the request id (bound to every log line, and sent back), and a 500 answered
    here for an unexpected error, so it is counted and carries its id. Plain ASGI rather than
    Starlette's BaseHTTPMiddleware, which runs every request in a task group of its own."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(Headers(scope=scope).get(REQUEST_ID_HEADER))
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self._app(scope, receive, send_with_id)
            except Exception:
                log.exception("http.unhandled", path=scope["path"])
                if answered:  # too late for a 500: the status line is sent
                    raise
                await _internal_error(Request(scope))(scope, receive, send_with_id)
        template = getattr(scope.get("route"), "path", "unmatched")
        HTTP_LATENCY.labels(self._service, template, scope["method"]).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(self._service, template, scope["method"], str(status)).inc()


def request_id_of(sent: str | None) -> str:
    """The caller's X-Request-ID when it is a plain id (so logs can be joined with the caller's), else a new one."""
    if sent is not None and _REQUEST_ID.match(sent):
        return sent
    return uuid.uuid4().hex


def _validation_errors_are_problems(app: FastAPI) -> None:
    """FastAPI documents its 422 as plain JSON; warmbee answers every error as problem+json, so the
    OpenAPI document says so too (clients and schemathesis hold us to it)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    if "requestBody" in operation:  # LimitBody's answer, whatever the route
                        operation.setdefault("responses", {}).setdefault("413", {"description": "body too large"})
                    for parameter in operation.get("parameters", []):
                        if parameter["in"] == "header" and parameter["name"] == IDEMPOTENCY_KEY:
                            _require_idempotency_key(parameter)
                    for status, response in operation.get("responses", {}).items():
                        if status.startswith("4") or status.startswith("5"):
                            response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _require_idempotency_key(parameter: dict[str, Any]) -> None:
    """Wherever a route takes an Idempotency-Key, API.md requires it, a non-empty one. The routes declare it
    optional so that they answer its absence themselves (idempotency-key-required, saying what to send);
    the document says what a caller must send."""
    parameter["required"] = True
    schema = parameter["schema"]
    strings = [s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"]
    parameter["schema"] = {**(strings[0] if strings else {"type": "string"}), "minLength": 1}


def encode_cursor(value: int) -> str:
    return format(value, "x")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # A cursor is a bigint in hex as we wrote it: anything else (int() also takes " 1_f", "0x1f", a
    # 10,000-digit number, a value past bigint that PostgreSQL would refuse with a 500) is refused here.
    if _CURSOR.fullmatch(cursor):
        return int(cursor, 16)
    raise DomainError("cursor: pass the next_cursor of the previous page unchanged", kind="invalid-cursor")
