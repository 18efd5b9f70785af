"""The Quart-Trio application: factory, bearer-token auth, JSON errors, the JSON body.

Owns: who is calling (admin or one account), how every error looks on the wire
(`{"error": {"code", "message", "field"}}`), and reading a body as a JSON object
(400 rules). What each field may hold is declared in spec.py. It must not hold
SQL (that is `db`) nor serve sockets (that is `serve.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Any, Final, NoReturn

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..credentials import Verifier, parse_api_key, same_token
from ..db import SQL, ConstraintViolation, Database, DatabaseUnavailable
from ..ocpp16 import SchemaRegistry
from ..stations.commands import CommandBus

log = logging.getLogger(__name__)

# Deeper bodies are refused before parsing: json's decoder recurses per level, and
# no body this API takes nests more than a few levels.
MAX_BODY_BYTES: Final = 1 << 20
MAX_JSON_DEPTH: Final = 64
_JSON_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_NESTING: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def fail(status: int, code: str, message: str, field: str | None = None) -> NoReturn:
    raise ApiError(status, code, message, field)


def invalid(field: str, message: str) -> NoReturn:
    fail(422, "invalid_field", f"{echo(field, 100)}: {message}", field)


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID | None  # None = the admin token
    key_id: str | None = None

    @property
    def name(self) -> str:
        """Who asked, for audit rows: never the token itself."""
        return "admin" if self.key_id is None else f"api-key:{self.key_id}"

    @property
    def is_admin(self) -> bool:
        return self.account_id is None


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


def require_admin() -> None:
    if not principal().is_admin:
        fail(403, "forbidden", "this endpoint needs the admin token")


def check_account(account_id: uuid.UUID) -> None:
    """403 unless the caller is the admin or that account."""
    me = principal()
    if not me.is_admin and me.account_id != account_id:
        fail(403, "forbidden", "this resource belongs to another account")


async def scoped_account(requested: uuid.UUID | None) -> uuid.UUID | None:
    """The account filter for a listing: an account key sees only its own.

    Like every filter naming an object: an unknown account is 404, another
    account's 403 (docs/read-api.md).
    """
    me = principal()
    if requested is not None:
        if await database().fetch_one(SQL.get_account, {"id": requested}) is None:
            fail(404, "not_found", "no such account")
        if not me.is_admin and requested != me.account_id:
            fail(403, "forbidden", "an account key can only list its own account")
        return requested
    return me.account_id


# Codes for the errors Quart/Werkzeug raise themselves, named like ours.
HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                     413: "payload_too_large"}


def echo(text: str, limit: int) -> str:
    """Client text quoted back in an error: bounded, NUL and lone surrogates escaped."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=_default), status=status,
                    mimetype="application/json")


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (strings skipped), without recursion."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0)


async def json_object() -> dict[str, Any]:
    """The body as a JSON object, numbers exact; 400 when it is not one (not UTF-8,
    not JSON, NaN/Infinity, nested deeper than MAX_JSON_DEPTH)."""
    raw = await request.get_data()
    try:
        text = raw.decode("utf-8") if raw else "null"
    except UnicodeDecodeError:
        fail(400, "malformed_json", "request body is not valid UTF-8")
    if json_depth(text) > MAX_JSON_DEPTH:
        fail(400, "malformed_json", f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError:  # also int() past the interpreter's digit limit
        fail(400, "malformed_json", "request body is not valid JSON")
    if not isinstance(data, dict):
        fail(400, "malformed_json", "request body must be a JSON object")
    return data


def unstorable(value: Any, path: str = "") -> str | None:
    """The path (`a.b[2].c`) of the first string in `value` that PostgreSQL cannot store
    (a NUL character, or a lone UTF-16 surrogate such as JSON's "\\ud800"), or None.

    Checked before any write so such input is a 422 naming the field, never a 500.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return path or "value"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "value"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = unstorable(key, where) or unstorable(item, where)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable(item, f"{path}[{index}]")
            if found:
                return found
    return None


def finish_sends(asgi_app: Callable[[Any, Any, Any], Awaitable[None]]
                 ) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """Every ASGI send runs to its end, even when Quart-Trio cancels the request.

    An answer given before the body was read (413, 401, 404, ...) makes Hypercorn
    close the connection inside the app's last send; that same step wakes Quart-Trio's
    body reader, which cancels the request's nursery, which cancelled the close: the
    socket stayed open, unread, forever, and a client still sending its body hung.
    Hypercorn already shields the socket writes themselves.
    """
    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def shielded(message: Any) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await asgi_app(scope, receive, shielded)

    return app


def create_app(db: Database, *, admin_token: str, public_ocpp_url: str, verifier: Verifier,
               commands: CommandBus, schemas: SchemaRegistry) -> QuartTrio:
    from . import accounts, id_tags, locations, openapi, reads, stations
    from . import commands as commands_api
    from .console import serve_console
    from .spec import operation_of

    app = QuartTrio(__name__, static_folder=None)
    app.url_map.merge_slashes = False  # "//" is a 404, not a redirect a client must follow
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.asgi_app = finish_sends(app.asgi_app)  # type: ignore[method-assign]
    # The operator console (static files, a client of this API) answers /console/ first.
    app.asgi_app = serve_console(app.asgi_app)  # type: ignore[method-assign]
    app.extensions["autimit"] = {"db": db, "public_ocpp_url": public_ocpp_url.rstrip("/"),
                                 "commands": commands, "schemas": schemas}
    for module in (accounts, locations, stations, id_tags, reads, commands_api, openapi):
        app.register_blueprint(module.blueprint)
    # Built once here, so a route without its declaration fails at start-up.
    app.extensions["autimit"]["openapi"] = openapi.document(app, schemas)

    @app.before_request
    async def authenticate() -> None:
        view = app.view_functions.get(request.endpoint or "")
        declared = operation_of(view) if view is not None else None
        if declared is not None and declared.public:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            fail(401, "unauthorized", "missing bearer token")
        if same_token(token, admin_token):
            g.principal = Principal(None)
            return
        key_id = parse_api_key(token)
        row = await db.fetch_one(SQL.find_api_key, {"key_id": key_id}) if key_id else None
        if row is None or not await verifier.verify(token, row["key_hash"]):
            fail(401, "unauthorized", "invalid bearer token")
        g.principal = Principal(row["account_id"], key_id)

    @app.before_request
    async def storable_query() -> None:
        # Every query value may reach a statement; PostgreSQL cannot take these.
        for name, value in request.args.items(multi=True):
            if unstorable(name) or unstorable(value):
                invalid(name, "must not contain NUL characters or lone surrogates")

    @app.errorhandler(ApiError)
    async def api_error(err: ApiError) -> Response:
        body: dict[str, Any] = {"code": err.code, "message": echo(err.message, 500)}
        if err.field:
            body["field"] = echo(err.field, 100)
        response = json_response({"error": body}, err.status)
        if err.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(DatabaseUnavailable)
    async def db_down(_: DatabaseUnavailable) -> Response:
        return json_response({"error": {"code": "unavailable",
                                        "message": "database unavailable, retry later"}}, 503)

    @app.errorhandler(ConstraintViolation)
    async def constraint(err: ConstraintViolation) -> Response:
        # Constraints the resource modules did not turn into a precise error.
        log.warning("unmapped constraint violation: %s %s", err.kind, err.constraint)
        return json_response({"error": {"code": "conflict",
                                        "message": "the request conflicts with stored data"}},
                             409)

    @app.errorhandler(HTTPException)
    async def http_error(err: HTTPException) -> Response:
        status = err.code or 500
        code = HTTP_CODES.get(status) or (err.name or "error").lower().replace(" ", "_")
        response = json_response({"error": {"code": code, "message": err.description or code}},
                                 status)
        if isinstance(err, MethodNotAllowed) and err.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(err.valid_methods))
        return response

    @app.errorhandler(Exception)
    async def crash(err: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"error": {"code": "internal_error",
                                        "message": "internal error"}}, 500)

    return app


def context() -> dict[str, Any]:
    from quart import current_app

    return current_app.extensions["autimit"]  # type: ignore[no-any-return]


def database() -> Database:
    return context()["db"]  # type: ignore[no-any-return]
