"""Declarative request and response definitions: one definition validates, shapes and documents.

Owns the field classes -- each parses a JSON or query-string value (a 422 naming the
field when it is wrong) and emits its JSON Schema --, `Obj` (named fields: a request
body, a query, or a response built from a database row), `Page` (the listing
envelope), and `operation`, the decorator with which a view declares its body,
query, responses and error statuses. Views read their input through `body()` and
`query()`, which use the current view's declaration, and shape their answers with
`Obj.shape`; openapi.py reads the same declarations from the app's url_map, so the
document cannot drift from what is validated. Holds no routes and no SQL.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, Final, Literal, TypeVar

from quart import current_app, request
from werkzeug.datastructures import MultiDict

from .app import check_account, invalid, json_object, principal, unstorable

Role = Literal["request", "response"]
Source = str | Callable[[Any], Any] | None

# Timestamps outside this range are refused: beyond it, `from` minus a default span or
# the conversion of a stored value to UTC would overflow Python's datetime.
MIN_TIME: Final = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
MAX_TIME: Final = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
_TIMESTAMP_CHARS: Final = re.compile(r"[0-9A-Za-z:.,+ -]{1,64}")
# A '+' of an offset left unencoded in a query string arrives as a space.
_SPACED_OFFSET: Final = re.compile(r"(.*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})")
# Numbers are kept to 12 decimal places (more than any column stores): PostgreSQL
# refuses exponents such as 1E-99999 that Decimal accepts.
_QUANTUM: Final = Decimal("1e-12")
_WIDE: Final = Context(prec=100)
_CAMEL_HUMP: Final = re.compile(r"(?<!^)(?=[A-Z])")


def parse_uuid(name: str, raw: object) -> uuid.UUID:
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    invalid(name, "must be a UUID")


def parse_timestamp(name: str, raw: object) -> dt.datetime:
    """An ISO 8601 timestamp with a time zone, from MIN_TIME to MAX_TIME; else 422."""
    try:
        # fromisoformat lets a NUL through ("...00\x00Z")
        text = raw if isinstance(raw, str) and _TIMESTAMP_CHARS.fullmatch(raw) else None
        parsed = None if text is None else dt.datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        invalid(name, "must be an ISO 8601 timestamp with a time zone")
    if not MIN_TIME <= parsed <= MAX_TIME:
        invalid(name, f"must be from {MIN_TIME.year} to {MAX_TIME.year}")
    return parsed


def snake(name: str) -> str:
    return _CAMEL_HUMP.sub("_", name).lower()


# ---------------------------------------------------------------- fields

class Field:
    """One named value. In a request: `read` (JSON) or `from_query` parses it, a 422
    naming it when wrong; absent or null is `default`, or "is required". In a
    response: `take` reads it from a row (`source`: a column, a function of the row,
    or by default the snake_case column of its name); `null` says it may be null.
    `schema(role)` is its JSON Schema: limits and patterns only for requests."""

    json_type = "string"

    def __init__(self, doc: str = "", *, required: bool = False, default: Any = None,
                 null: bool = False, source: Source = None) -> None:
        self.doc, self.required, self.default = doc, required, default
        self.null, self.source = null, source

    # ------------------------------------------------ requests
    def read(self, name: str, value: Any) -> Any:
        if value is None:
            if self.required:
                invalid(name, "is required")
            return self.default
        return self.parse(name, value)

    def parse(self, name: str, value: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is not read from a request")

    def parse_text(self, name: str, text: str) -> Any:
        """The query-string form (always text)."""
        return self.parse(name, text)

    def from_query(self, name: str, args: MultiDict[str, str]) -> Any:
        raw = args.get(name)
        return self.read(name, None) if raw is None else self.parse_text(name, raw)

    # ------------------------------------------------ responses
    def take(self, name: str, row: Any) -> Any:
        if callable(self.source):
            return self.source(row)
        return self.shape(row[self.source or snake(name)])

    def shape(self, value: Any) -> Any:
        return value

    # ------------------------------------------------ documentation
    def constraints(self) -> dict[str, Any]:
        """Limits a request is checked against (not promised for responses)."""
        return {}

    def type_schema(self) -> dict[str, Any]:
        return {"type": self.json_type}

    def schema(self, role: Role, *, nullable: bool = False) -> dict[str, Any]:
        schema = self.type_schema()
        if role == "request":
            schema.update(self.constraints())
        if nullable:
            schema = _or_null(schema)
        if self.doc:
            schema["description"] = self.doc
        if role == "request" and self.default is not None:
            schema["default"] = self.default
        return schema


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema or "allOf" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    schema = dict(schema)
    schema["type"] = [schema["type"], "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


class Text(Field):
    """A non-blank string of storable text (no NUL, no lone surrogate)."""

    def __init__(self, doc: str = "", *, max_len: int = 200, min_len: int = 1,
                 pattern: str | None = None, **options: Any) -> None:
        super().__init__(doc, **options)
        self.max_len, self.min_len, self.pattern = max_len, min_len, pattern

    def parse(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            invalid(name, "must be a non-empty string")
        if unstorable(value, name):
            invalid(name, "must not contain NUL characters or lone surrogates")
        if len(value) > self.max_len:
            invalid(name, f"must be at most {self.max_len} characters")
        self._match(name, value)
        return value

    def parse_text(self, name: str, text: str) -> str:
        # Query text may be blank-looking (an idTag of spaces is a valid CiString).
        if not self.min_len <= len(text) <= self.max_len:
            invalid(name, f"must be {self.min_len} to {self.max_len} characters")
        self._match(name, text)
        return text

    def _match(self, name: str, value: str) -> None:
        if self.pattern and not re.fullmatch(self.pattern, value):
            invalid(name, "has an invalid format")

    def constraints(self) -> dict[str, Any]:
        limits: dict[str, Any] = {"minLength": self.min_len, "maxLength": self.max_len}
        if self.pattern:
            limits["pattern"] = f"^(?:{self.pattern})$"
        return limits


class Uuid(Field):
    def parse(self, name: str, value: Any) -> uuid.UUID:
        return parse_uuid(name, value)

    def type_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uuid"}


class Integer(Field):
    json_type = "integer"

    def __init__(self, doc: str = "", *, low: int | None = None, high: int | None = None,
                 **options: Any) -> None:
        super().__init__(doc, **options)
        self.low, self.high = low, high

    def parse(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self._in_range(value):
            self._refuse(name)
        return value

    def parse_text(self, name: str, text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text) or not self._in_range(int(text)):
            self._refuse(name)
        return int(text)

    def _in_range(self, value: int) -> bool:
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))

    def _refuse(self, name: str) -> None:
        invalid(name, f"must be an integer from {self.low} to {self.high}")

    def constraints(self) -> dict[str, Any]:
        return {key: value for key, value in (("minimum", self.low), ("maximum", self.high))
                if value is not None}


class Number(Field):
    """A JSON number, kept exact (Decimal) to 12 decimal places."""

    json_type = "number"

    def __init__(self, doc: str = "", *, low: Decimal | None = None,
                 high: Decimal | None = None, **options: Any) -> None:
        super().__init__(doc, **options)
        self.low, self.high = low, high

    def parse(self, name: str, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            invalid(name, "must be a number")
        number = Decimal(value)
        if ((self.low is not None and number < self.low)
                or (self.high is not None and number > self.high)):
            invalid(name, f"must be from {self.low} to {self.high}")
        return number.quantize(_QUANTUM, context=_WIDE)

    def constraints(self) -> dict[str, Any]:
        return {key: int(value) if value == value.to_integral() else float(value)
                for key, value in (("minimum", self.low), ("maximum", self.high))
                if value is not None}


class Boolean(Field):
    json_type = "boolean"

    def parse(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            invalid(name, "must be true or false")
        return value

    def parse_text(self, name: str, text: str) -> bool:
        if text not in ("true", "false"):
            invalid(name, "must be true or false")
        return text == "true"


class Timestamp(Field):
    """ISO 8601 with a time zone; responses are UTC with `Z`."""

    def parse(self, name: str, value: Any) -> dt.datetime:
        return parse_timestamp(name, value)

    def parse_text(self, name: str, text: str) -> dt.datetime:
        spaced = _SPACED_OFFSET.fullmatch(text)
        return parse_timestamp(name, f"{spaced[1]}+{spaced[2]}" if spaced else text)

    def type_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


class Choice(Field):
    def __init__(self, options: Iterable[str], doc: str = "", **more: Any) -> None:
        super().__init__(doc, **more)
        self.options = tuple(options)

    def parse(self, name: str, value: Any) -> str:
        if value not in self.options:
            invalid(name, f"must be one of {', '.join(self.options)}")
        return value  # type: ignore[no-any-return]

    def type_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.options)}


class Names(Field):
    """A query parameter repeated and/or comma-separated; absent = None (all)."""

    def __init__(self, pattern: str, message: str, doc: str = "", **options: Any) -> None:
        super().__init__(doc, **options)
        self.pattern, self.message = pattern, message

    def from_query(self, name: str, args: MultiDict[str, str]) -> list[str] | None:
        names = [part.strip() for raw in args.getlist(name) for part in raw.split(",")]
        if not names:
            return None
        for part in names:
            if not re.fullmatch(self.pattern, part):
                invalid(name, self.message)
        return names

    def type_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}

    def constraints(self) -> dict[str, Any]:
        return {"items": {"type": "string", "pattern": f"^(?:{self.pattern})$"}}


class Json(Field):
    """A JSON object (or another `kind`): an OCPP payload, a stored document, as is."""

    def __init__(self, doc: str = "", *, kind: str = "object", **options: Any) -> None:
        super().__init__(doc, **options)
        self.json_type = kind


class Content(Field):
    """A response that is not JSON (an HTML page, a metrics exposition)."""

    def __init__(self, media_type: str, doc: str = "") -> None:
        super().__init__(doc)
        self.media_type = media_type


class List(Field):
    """A list in a response, as the database or the view built it (not reshaped)."""

    json_type = "array"

    def __init__(self, item: Field, doc: str = "", **options: Any) -> None:
        super().__init__(doc, **options)
        self.item = item

    def type_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema("response")}


class Owner(Uuid):
    """`accountId` of a new object: required with the admin token, the key's own
    account by default, and 403 for another account's (checked as it is read, so
    before any later field)."""

    def __init__(self) -> None:
        super().__init__("The owning account. Required with the admin token; an account "
                         "key may omit it (its own account) and may not name another.")

    def read(self, name: str, value: Any) -> uuid.UUID:
        me = principal()
        if value is None:
            if me.is_admin:
                invalid(name, "is required")
            assert me.account_id is not None
            return me.account_id
        account_id = parse_uuid(name, value)
        check_account(account_id)
        return account_id


class Values(dict[str, Any]):
    """Parsed fields by name, absent ones at their default; `given`: the names sent."""

    given: frozenset[str] = frozenset()


class Obj(Field):
    """Named fields: a request body (unknown members refused), a query, or a response
    object shaped from a row. A `name` makes it a component of the OpenAPI document."""

    json_type = "object"

    def __init__(self, name: str | None, fields: Mapping[str, Field], doc: str = "",
                 **options: Any) -> None:
        super().__init__(doc, **options)
        self.name, self.fields = name, dict(fields)

    def read_body(self, data: dict[str, Any]) -> Values:
        values = Values()
        for name, spec in self.fields.items():  # in declaration order: the first error wins
            values[name] = spec.read(name, data.get(name))
        for name in data:  # so a typo is never silently ignored
            if name not in self.fields:
                invalid(name, "is not a known field")
        values.given = frozenset(data)
        return values

    def read_query(self, args: MultiDict[str, str]) -> Values:
        # Unknown query parameters are ignored, as HTTP caches and proxies add some.
        values = Values({name: spec.from_query(name, args) for name, spec in self.fields.items()})
        values.given = frozenset(name for name in self.fields if name in args)
        return values

    def take(self, name: str, row: Any) -> Any:
        # A nested object is by default made from the same row (e.g. a station's runtime).
        value = row if self.source is None else (
            self.source(row) if callable(self.source) else row[self.source])
        return self.shape(value)

    def shape(self, row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        return {name: spec.take(name, row) for name, spec in self.fields.items()}

    def type_schema(self) -> dict[str, Any]:
        return {"type": "object"}

    def object_schema(self, role: Role, ref: Callable[[Obj, Role], dict[str, Any]]
                      ) -> dict[str, Any]:
        """The schema of the object itself; `ref` turns a named nested Obj into a $ref."""
        properties: dict[str, Any] = {}
        for name, spec in self.fields.items():
            nullable = spec.null if role == "response" else not spec.required
            properties[name] = spec_schema(spec, role, ref, nullable=nullable)
        schema: dict[str, Any] = {"type": "object", "properties": properties,
                                  "additionalProperties": False}
        required = [name for name, spec in self.fields.items()
                    if role == "response" or spec.required]
        if required:
            schema["required"] = required
        if self.doc:
            schema["description"] = self.doc
        return schema


def spec_schema(spec: Field, role: Role, ref: Callable[[Obj, Role], dict[str, Any]], *,
                nullable: bool = False) -> dict[str, Any]:
    """A field's schema inside an object: named objects by reference."""
    if isinstance(spec, Obj):
        schema = ref(spec, role) if spec.name else spec.object_schema(role, ref)
        if nullable:
            schema = _or_null(schema)
        return schema
    if isinstance(spec, List) and isinstance(spec.item, Obj):
        schema = {"type": "array", "items": spec_schema(spec.item, role, ref)}
        if spec.doc:
            schema["description"] = spec.doc
        return _or_null(schema) if nullable else schema
    return spec.schema(role, nullable=nullable)


@dataclass(frozen=True)
class Page:
    """The listing envelope around `item`s (README "REST API"), with `extra` members.
    Items of one of several shapes (a tuple) need a `name`."""

    item: Obj | tuple[Obj, ...]
    extra: Mapping[str, Field] = field(default_factory=dict)
    name: str | None = None

    @property
    def items(self) -> tuple[Obj, ...]:
        return self.item if isinstance(self.item, tuple) else (self.item,)

    @property
    def component(self) -> str:
        if self.name:
            return self.name
        assert isinstance(self.item, Obj) and self.item.name, "a Page of several shapes: name it"
        return f"{self.item.name}Page"


# The envelope itself, a component the listings extend.
PAGE_FIELDS: Final = {
    "items": Json("This page of results.", kind="array"),
    "limit": Integer("The page size asked for."),
    "offset": Integer("How many results were skipped."),
    "nextOffset": Integer("The `offset` of the next page; null on the last page.", null=True),
}


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "limit": limit, "offset": offset,
            "nextOffset": offset + limit if len(items) == limit else None}


def page_query(*, high: int = 500, default: int = 50) -> dict[str, Field]:
    return {"limit": Integer("Page size.", low=1, high=high, default=default),
            "offset": Integer("Results to skip.", low=0, high=10_000_000, default=0)}


# ---------------------------------------------------------------- operations

# A response's content, or (its description, its content); a str is a description only.
Response = Field | Page | str | tuple[str, Field | Page]


@dataclass(frozen=True)
class Operation:
    """What a view takes and answers, for validation and for the OpenAPI document."""

    summary: str
    description: str = ""
    body: Obj | None = None
    body_optional: bool = False
    query: Obj | None = None
    responses: Mapping[int, Response] = field(default_factory=dict)
    errors: Mapping[int, str] = field(default_factory=dict)  # beyond the automatic ones
    public: bool = False                  # no token needed
    ocpp_actions: tuple[str, ...] = ()    # `<action>` takes each; the body is its OCPP request


F = TypeVar("F", bound=Callable[..., Any])


def operation(summary: str, *, description: str = "", body: Obj | None = None,
              body_optional: bool = False, query: Mapping[str, Field] | Obj | None = None,
              responses: Mapping[int, Response], errors: Mapping[int, str] | None = None,
              public: bool = False, ocpp_actions: Iterable[str] = ()) -> Callable[[F], F]:
    """Declare a view's body, query, responses and extra error statuses (placed
    under the route decorator)."""
    if query is not None and not isinstance(query, Obj):
        query = Obj(None, query)
    declared = Operation(summary, description, body, body_optional, query, dict(responses),
                         dict(errors or {}), public, tuple(sorted(ocpp_actions)))

    def attach(view: F) -> F:
        view.operation = declared  # type: ignore[attr-defined]
        return view

    return attach


def operation_of(view: Callable[..., Any]) -> Operation | None:
    return getattr(view, "operation", None)


def current_operation() -> Operation:
    op = operation_of(current_app.view_functions[request.endpoint or ""])
    assert op is not None, f"{request.endpoint} has no @operation"
    return op


async def body() -> Values:
    """The request body, parsed with the current view's declared body."""
    spec = current_operation()
    assert spec.body is not None, f"{request.endpoint} declares no body"
    if spec.body_optional and not await request.get_data():
        return Values()
    return spec.body.read_body(await json_object())


def query() -> Values:
    """The query string, parsed with the current view's declared query."""
    spec = current_operation().query
    assert spec is not None, f"{request.endpoint} declares no query"
    return spec.read_query(request.args)
