"""The API's description of itself, and the operator's scrape endpoint.

Owns: the OpenAPI 3.1 document, generated from the app's url_map and each view's
`@operation` declaration (spec.py) -- the same definitions that validate requests
and shape responses -- plus the official OCPP request schemas for the command
endpoints; its readable page (server-rendered HTML, nothing fetched at run time);
and `GET /metrics` (admin). Holds no SQL and validates nothing itself.
"""

from __future__ import annotations

import copy
import html
import importlib.metadata
import json
import re
from typing import Any, Final

from quart import Blueprint, Quart, Response

from ..ocpp16 import SchemaRegistry
from .app import context, json_response, require_admin
from .spec import (
    PAGE_FIELDS,
    Content,
    Field,
    Json,
    Obj,
    Operation,
    Page,
    Role,
    Uuid,
    operation,
    operation_of,
    spec_schema,
)

blueprint = Blueprint("service", __name__)

JSON_MEDIA: Final = "application/json"
ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
# The errors every route may answer, as components.responses.
ERRORS: Final = {
    400: ("MalformedJson", "The body is not a JSON object: not UTF-8, not JSON, NaN or "
                           "Infinity, or nested deeper than 64 levels (`malformed_json`)."),
    401: ("Unauthorized", "No bearer token, or not a valid one (`unauthorized`)."),
    403: ("Forbidden", "Another account's data, or an admin-only endpoint (`forbidden`)."),
    404: ("NotFound", "No such object: in the path, or named by a filter (`not_found`)."),
    413: ("PayloadTooLarge", "The body is larger than 1 MiB (`payload_too_large`)."),
    422: ("InvalidField", "Valid JSON, but a field, query parameter or path id (`id`) is "
                          "invalid: `invalid_field`, named in `field`. Unknown body members "
                          "are refused; text with NUL or lone surrogates too."),
    503: ("Unavailable", "The database is unavailable; retry later (`unavailable`)."),
}
DESCRIPTION: Final = """\
The REST API of Autimit CSMS: provisioning (ADR 0001), the stations' state and history
(ADR 0002), and commands to chargers over OCPP-J 1.6.

Every request carries `Authorization: Bearer TOKEN`: the admin token, or an account API
key, which sees and changes only its own account's data. Errors are
`{"error": {"code", "message", "field"}}`. Listings take `limit` and `offset` and answer
`{"items", "limit", "offset", "nextOffset"}`; `nextOffset` is null on the last page.
Timestamps are ISO 8601 with a time zone (answers: UTC with `Z`).
"""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: "{" + _camel(m[1]) + "}", rule)


class _Builder:
    """One document's components, filled as operations reference them."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.schemas: dict[str, Any] = {"Error": _error_schema(), "Page": _page_schema()}
        self._named: dict[str, tuple[Obj | Page, Role]] = {}

    def ref(self, obj: Obj, role: Role) -> dict[str, Any]:
        assert obj.name is not None
        self._claim(obj.name, obj, role)
        if obj.name not in self.schemas:
            self.schemas[obj.name] = obj.object_schema(role, self.ref)
        return {"$ref": f"#/components/schemas/{obj.name}"}

    def page(self, listing: Page) -> dict[str, Any]:
        name = listing.component
        self._claim(name, listing, "response")
        if name not in self.schemas:
            items = [self.ref(item, "response") for item in listing.items]
            extra = {key: spec_schema(spec, "response", self.ref, nullable=spec.null)
                     for key, spec in listing.extra.items()}
            schema: dict[str, Any] = {
                "allOf": [{"$ref": "#/components/schemas/Page"}], "type": "object",
                "properties": {"items": {"type": "array", "items": items[0] if len(items) == 1
                                         else {"anyOf": items}}, **extra},
                "unevaluatedProperties": False}
            if extra:
                schema["required"] = list(extra)
            self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _claim(self, name: str, owner: Obj | Page, role: Role) -> None:
        seen = self._named.setdefault(name, (owner, role))
        if seen[0] != owner or seen[1] != role:  # (equal Pages are one)
            raise ValueError(f"two definitions are both named {name!r}")

    def content(self, spec: Field | Page) -> dict[str, Any]:
        if isinstance(spec, Page):
            return {JSON_MEDIA: {"schema": self.page(spec)}}
        if isinstance(spec, Content):
            return {spec.media_type: {"schema": {"type": "string"}}}
        return {JSON_MEDIA: {"schema": spec_schema(spec, "response", self.ref)}}

    def ocpp_request(self, action: str) -> dict[str, Any]:
        """The official OCPP 1.6 request schema (errata applied) as components: its
        `definitions` become `ocpp.<Action>Request.<Name>` beside it."""
        name = f"ocpp.{action}Request"
        if name not in self.schemas:
            # The registry keeps the compiled schemas; it has no public accessor yet.
            compiled = self.registry._validators[action, "request"].schema
            schema: dict[str, Any] = copy.deepcopy(dict(compiled))  # type: ignore[arg-type]
            definitions = schema.pop("definitions", {})
            schema.pop("$schema", None)  # draft-04/06 documents embedded in a 3.1 one
            schema.pop("$id", None)

            def local(node: Any) -> Any:
                if isinstance(node, dict):
                    return {key: (f"#/components/schemas/{name}.{value.rsplit('/', 1)[-1]}"
                                  if key == "$ref" and isinstance(value, str)
                                  and value.startswith("#/definitions/") else local(value))
                            for key, value in node.items()}
                if isinstance(node, list):
                    return [local(item) for item in node]
                return node

            self.schemas[name] = local(schema)
            for key, value in definitions.items():
                self.schemas[f"{name}.{key}"] = local(value)
        return {"$ref": f"#/components/schemas/{name}"}


def _error_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["error"], "additionalProperties": False,
            "description": "Every error answer.",
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z_]+$",
                             "description": "Stable, machine-readable."},
                    "message": {"type": "string", "description": "For people."},
                    "field": {"type": "string",
                              "description": "The field, query parameter or path id at "
                                             "fault (422)."}}}}}


def _page_schema() -> dict[str, Any]:
    return {"type": "object", "required": list(PAGE_FIELDS),
            "description": "The listing envelope.",
            "properties": {name: spec.schema("response", nullable=spec.null)
                           for name, spec in PAGE_FIELDS.items()}}


def _parameters(build: _Builder, rule_arguments: list[str], op: Operation
                ) -> list[dict[str, Any]]:
    params = [{"name": _camel(name), "in": "path", "required": True,
               "schema": {"type": "string", "format": "uuid"}}
              for name in rule_arguments if not (op.ocpp_actions and name == "action")]
    for name, spec in (op.query.fields.items() if op.query else ()):
        schema = spec.schema("request")
        param: dict[str, Any] = {"name": name, "in": "query", "required": spec.required,
                                 "schema": schema}
        if "description" in schema:
            param["description"] = schema.pop("description")
        if param["schema"].get("type") == "array":
            param.update(style="form", explode=True)
        params.append(param)
    return params


def _errors(op: Operation, has_ids: bool) -> dict[int, dict[str, Any]]:
    statuses = {422}
    if not op.public:
        statuses |= {401, 403, 503}
    if op.body is not None or op.ocpp_actions:
        statuses |= {400, 413}
    if has_ids or (op.query and any(isinstance(s, Uuid) for s in op.query.fields.values())):
        statuses.add(404)
    answers: dict[int, dict[str, Any]] = {
        status: {"$ref": f"#/components/responses/{ERRORS[status][0]}"} for status in statuses}
    for status, description in op.errors.items():
        answers[status] = {"description": description,
                           "content": {JSON_MEDIA: {"schema": ERROR_REF}}}
    return answers


def _operation(build: _Builder, view: Any, op: Operation, arguments: list[str],
               action: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"send{action}" if action else _camel(view.__name__),
        "summary": f"{op.summary}: {action}" if action else op.summary,
        "tags": [view.__module__.rsplit(".", 1)[-1]]}
    if op.description:
        out["description"] = op.description
    params = _parameters(build, arguments, op)
    if params:
        out["parameters"] = params
    if action:
        out["requestBody"] = {"required": True, "description": f"The OCPP 1.6 {action} "
                              "request payload (official schema).",
                              "content": {JSON_MEDIA: {"schema": build.ocpp_request(action)}}}
    elif op.body is not None:
        out["requestBody"] = {"required": not op.body_optional,
                              "content": {JSON_MEDIA: {"schema": build.ref(op.body,
                                                                          "request")}}}
    responses: dict[str, Any] = {}
    for status, declared in op.responses.items():
        description, spec = declared if isinstance(declared, tuple) else ("", declared)
        if isinstance(spec, str):
            responses[str(status)] = {"description": spec}
            continue
        doc = spec.doc if isinstance(spec, Field) else ""
        responses[str(status)] = {"description": description or doc or _REASON[status],
                                  "content": build.content(spec)}
    has_ids = any(name != "action" for name in arguments)
    for status, answer in sorted(_errors(op, has_ids).items()):
        responses.setdefault(str(status), answer)
    out["responses"] = dict(sorted(responses.items()))
    if op.public:
        out["security"] = []
    return out


_REASON: Final = {200: "OK", 201: "Created", 202: "Accepted"}


def document(app: Quart, registry: SchemaRegistry) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route `app` serves; a route without an
    `@operation` is an error."""
    build = _Builder(registry)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        op = operation_of(view)
        if op is None:
            raise LookupError(f"{rule.rule} ({rule.endpoint}) declares no @operation")
        arguments = sorted(rule.arguments, key=rule.rule.index)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for action in op.ocpp_actions or (None,):
                path = _path(rule.rule)
                if action:
                    path = path.replace("{action}", action)
                paths.setdefault(path, {})[method.lower()] = _operation(
                    build, view, op, arguments, action)
    ids = [o["operationId"] for item in paths.values() for o in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Autimit CSMS REST API",
                 "version": importlib.metadata.version("autimit-csms"),
                 "description": DESCRIPTION},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(build.schemas.items())),
            "responses": {name: {"description": text,
                                 "content": {JSON_MEDIA: {"schema": ERROR_REF}},
                                 **({"headers": {"WWW-Authenticate": {
                                     "schema": {"type": "string", "const": "Bearer"}}}}
                                    if status == 401 else {})}
                          for status, (name, text) in ERRORS.items()},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "The admin token (everything), or an account API key "
                               "(`POST /api/accounts/{accountId}/api-keys`: its own "
                               "account's data only)."}}},
    }
    # Plain JSON values only (the OCPP schemas hold Decimal limits).
    return json.loads(json.dumps(doc, default=float))  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the readable page

_STYLE: Final = """
body{font:15px/1.45 system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;
color:#1d232a}code,pre{font:13px ui-monospace,monospace}pre{background:#f4f6f8;padding:.6rem;
overflow:auto}h2{border-bottom:1px solid #ccd;margin-top:2.5rem}section{margin:1.5rem 0}
.m{display:inline-block;min-width:4.2rem;font-weight:600;color:#0b5}table{border-collapse:
collapse;margin:.4rem 0}td,th{border:1px solid #dde;padding:.2rem .5rem;text-align:left;
vertical-align:top}th{background:#f4f6f8}nav li{list-style:none}small{color:#667}
"""


def _type(schema: dict[str, Any]) -> str:
    """A short readable type with links to components."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    kinds = schema.get("type", "any")
    text = " | ".join(kinds) if isinstance(kinds, list) else str(kinds)
    if "array" in text and "items" in schema:
        text = text.replace("array", f"array of {_type(schema['items'])}")
    if "format" in schema:
        text += f" ({html.escape(schema['format'])})"
    if "enum" in schema:
        text += ": " + ", ".join(html.escape(json.dumps(v)) for v in schema["enum"])
    return text


def _about(schema: dict[str, Any]) -> str:
    """The description, then the limits a request is checked against."""
    limits = [f"{label} {html.escape(json.dumps(schema[key]))}" for key, label in (
        ("minimum", "min"), ("maximum", "max"), ("minLength", "min length"),
        ("maxLength", "max length"), ("pattern", "pattern"), ("default", "default"))
        if key in schema]
    text = html.escape(schema.get("description", ""))
    return f"{text} <small>{'; '.join(limits)}</small>" if limits else text


def _properties(schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    base = "".join(f"<p>{_type(part)} and:</p>" for part in schema.get("allOf", ()))
    if not props:
        return f"<p><code>{_type(schema)}</code></p>" if "type" in schema else ""
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{_type(prop)}</td>"
        f"<td>{'yes' if name in required else ''}</td><td>{_about(prop)}</td></tr>"
        for name, prop in props.items())
    return (f"{base}<table><tr><th>member</th><th>type</th><th>required</th><th>about</th>"
            f"</tr>{rows}</table>")


def page_html(doc: dict[str, Any]) -> str:
    """The document as one HTML page: operations by tag, then the schemas."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
             f"{html.escape(doc['info']['title'])}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(doc['info']['title'])} <small>{doc['info']['version']}"
             f"</small></h1><pre>{html.escape(doc['info']['description'])}</pre>"
             '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> '
             "(OpenAPI 3.1).</p>"]
    operations = [(path, method, op) for path, item in doc["paths"].items()
                  for method, op in item.items()]
    tags = sorted({op["tags"][0] for _, _, op in operations})
    parts.append("<nav><h2>Operations</h2>")
    for tag in tags:
        links = "".join(
            f'<li><a href="#{op["operationId"]}"><span class=m>{method.upper()}</span>'
            f"<code>{html.escape(path)}</code></a> {html.escape(op['summary'])}</li>"
            for path, method, op in operations if op["tags"][0] == tag)
        parts.append(f"<h3>{html.escape(tag)}</h3><ul>{links}</ul>")
    parts.append("</nav>")
    responses = doc["components"]["responses"]
    for path, method, op in operations:
        parts.append(f'<section id="{op["operationId"]}"><h3><span class=m>{method.upper()}'
                     f"</span><code>{html.escape(path)}</code></h3>"
                     f"<p>{html.escape(op['summary'])}"
                     f"{' (no token needed)' if op.get('security') == [] else ''}</p>")
        if "description" in op:
            parts.append(f"<p>{html.escape(op['description'])}</p>")
        if op.get("parameters"):
            rows = "".join(
                f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                f"<td>{_type(p['schema'])}</td><td>{'yes' if p['required'] else ''}</td>"
                f"<td>{html.escape(p.get('description', ''))} {_about(p['schema'])}</td></tr>"
                for p in op["parameters"])
            parts.append("<table><tr><th>parameter</th><th>in</th><th>type</th>"
                         f"<th>required</th><th>about</th></tr>{rows}</table>")
        if "requestBody" in op:
            schema = op["requestBody"]["content"][JSON_MEDIA]["schema"]
            parts.append(f"<p>Body: {_type(schema)}"
                         f"{'' if op['requestBody']['required'] else ' (optional)'}</p>")
        rows = ""
        for status, answer in op["responses"].items():
            if "$ref" in answer:
                answer = responses[answer["$ref"].rsplit("/", 1)[-1]]
            media = answer.get("content", {})
            shown = ", ".join(_type(m["schema"]) if name == JSON_MEDIA else html.escape(name)
                              for name, m in media.items())
            rows += (f"<tr><td>{status}</td><td>{shown}</td>"
                     f"<td>{html.escape(answer['description'])}</td></tr>")
        parts.append(f"<table><tr><th>status</th><th>body</th><th>when</th></tr>{rows}"
                     "</table></section>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        about = schema.get("description", "")
        parts.append(f'<section id="schema-{html.escape(name)}"><h3>{html.escape(name)}</h3>'
                     f"<p>{html.escape(about)}</p>{_properties(schema)}</section>")
    parts.append("</body></html>")
    return "".join(parts)


# ---------------------------------------------------------------- routes

@blueprint.get("/api/openapi.json")
@operation("This API as an OpenAPI 3.1 document", public=True,
           responses={200: Json("The OpenAPI 3.1 document.")})
async def openapi_json() -> Response:
    return json_response(context()["openapi"])


@blueprint.get("/api/docs")
@operation("This API as a readable page", public=True,
           responses={200: Content("text/html", "The API reference, rendered from "
                                                "/api/openapi.json.")})
async def docs() -> Response:
    if "openapi_html" not in context():
        context()["openapi_html"] = page_html(context()["openapi"])
    return Response(context()["openapi_html"], mimetype="text/html")


@blueprint.get("/metrics")
@operation("Prometheus exposition of this process (admin)",
           responses={200: Content("text/plain; version=0.0.4",
                                   "Prometheus text format; each process exposes its own.")})
async def metrics() -> Response:
    require_admin()
    from .. import metrics as exposition  # its own module; imported when first scraped

    body, content_type = exposition.render()
    return Response(body, content_type=content_type)
