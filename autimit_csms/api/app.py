"""The Quart-Trio application: factory, bearer-token auth, JSON errors, field parsing.

Owns: who is calling (admin or one account), how every error looks on the wire
(`{"error": {"code", "message"}}`), and request-body validation helpers shared
by the resource modules. It must not hold SQL (that is `db`) nor serve sockets
(that is `serve.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..credentials import Verifier, parse_api_key, same_token
from ..db import SQL, ConstraintViolation, Database, DatabaseUnavailable
from ..ocpp16 import SchemaRegistry
from ..stations.commands import CommandBus

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def fail(status: int, code: str, message: str, field: str | None = None) -> NoReturn:
    raise ApiError(status, code, message, field)


def invalid(field: str, message: str) -> NoReturn:
    fail(422, "invalid_field", f"{field}: {message}", field)


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


def scoped_account(requested: uuid.UUID | None) -> uuid.UUID | None:
    """The account filter for a listing: an account key sees only its own."""
    me = principal()
    if me.is_admin:
        return requested
    if requested is not None and requested != me.account_id:
        fail(403, "forbidden", "an account key can only list its own account")
    return me.account_id


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


async def json_object() -> dict[str, Any]:
    """The body as a JSON object, numbers exact; 400 when it is not one."""
    raw = await request.get_data()
    try:
        data = json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        fail(400, "malformed_json", "request body is not valid JSON")
    if not isinstance(data, dict):
        fail(400, "malformed_json", "request body must be a JSON object")
    return data


async def json_body() -> Body:
    return Body(await json_object())


def page_args() -> tuple[int, int]:
    return (query_int("limit", default=50, low=1, high=500),
            query_int("offset", default=0, low=0, high=10_000_000))


def query_int(name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or not low <= int(raw) <= high:
        invalid(name, f"must be an integer from {low} to {high}")
    return int(raw)


def query_uuid(name: str) -> uuid.UUID | None:
    raw = request.args.get(name)
    return None if raw is None else parse_uuid(name, raw)


def parse_uuid(name: str, raw: object) -> uuid.UUID:
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    invalid(name, "must be a UUID")


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "limit": limit, "offset": offset,
            "nextOffset": offset + limit if len(items) == limit else None}


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


_MISSING = object()


class Body:
    """Typed access to a JSON object body; any problem is a 422 naming the field."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self._seen: set[str] = set()

    def _get(self, name: str, required: bool) -> Any:
        self._seen.add(name)
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                invalid(name, "is required")
            return None
        return value

    def text(self, name: str, *, required: bool = False, max_len: int = 200,
             pattern: str | None = None) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            invalid(name, "must be a non-empty string")
        if len(value) > max_len:
            invalid(name, f"must be at most {max_len} characters")
        if pattern and not re.fullmatch(pattern, value):
            invalid(name, "has an invalid format")
        return value

    def uuid(self, name: str, *, required: bool = False) -> uuid.UUID | None:
        value = self._get(name, required)
        return None if value is None else parse_uuid(name, value)

    def integer(self, name: str, *, required: bool = False, low: int, high: int) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            invalid(name, f"must be an integer from {low} to {high}")
        return value

    def number(self, name: str, *, required: bool = False, low: Decimal,
               high: Decimal) -> Decimal | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            invalid(name, "must be a number")
        number = Decimal(value)
        if not low <= number <= high:
            invalid(name, f"must be from {low} to {high}")
        return number

    def boolean(self, name: str, *, default: bool | None = None) -> bool | None:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            invalid(name, "must be true or false")
        return value

    def timestamp(self, name: str) -> dt.datetime | None:
        value = self._get(name, False)
        if value is None:
            return None
        try:
            parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            invalid(name, "must be an ISO 8601 timestamp with a time zone")
        return parsed

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        value = self._get(name, False)
        if value is not None and value not in options:
            invalid(name, f"must be one of {', '.join(options)}")
        return value

    def present(self, name: str) -> bool:
        return name in self._data

    def done(self) -> None:
        """Unknown fields are refused, so a typo is never silently ignored."""
        for name in self._data:
            if name not in self._seen:
                invalid(name, "is not a known field")


def create_app(db: Database, *, admin_token: str, public_ocpp_url: str, verifier: Verifier,
               commands: CommandBus, schemas: SchemaRegistry) -> QuartTrio:
    from . import accounts, id_tags, locations, reads, stations
    from . import commands as commands_api

    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.extensions["autimit"] = {"db": db, "public_ocpp_url": public_ocpp_url.rstrip("/"),
                                 "commands": commands, "schemas": schemas}
    for module in (accounts, locations, stations, id_tags, reads, commands_api):
        app.register_blueprint(module.blueprint)

    @app.before_request
    async def authenticate() -> None:
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

    @app.errorhandler(ApiError)
    async def api_error(err: ApiError) -> Response:
        body: dict[str, Any] = {"code": err.code, "message": err.message}
        if err.field:
            body["field"] = err.field
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
        code = (err.name or "error").lower().replace(" ", "_")
        return json_response({"error": {"code": code, "message": err.description or code}},
                             err.code or 500)

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
