"""Accounts (tenants) and their API keys: admin only."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ..credentials import hash_secret, new_api_key
from ..db import SQL, ConstraintViolation, Row
from .app import database, fail, json_body, json_response, parse_uuid, require_admin

blueprint = Blueprint("accounts", __name__)


def present(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "document": row["document"],
            "isActive": row["is_active"], "createdAt": row["created_at"],
            "updatedAt": row["updated_at"]}


@blueprint.post("/api/accounts")
async def create_account() -> Response:
    require_admin()
    body = await json_body()
    params = {"name": body.text("name", required=True),
              "document": body.text("document", required=True, max_len=64),
              "is_active": body.boolean("isActive", default=True)}
    body.done()
    row = await database().fetch_one(SQL.insert_account, params)
    assert row is not None
    return json_response(present(row), 201)


@blueprint.get("/api/accounts/<account_id>")
async def get_account(account_id: str) -> Response:
    require_admin()
    row = await database().fetch_one(SQL.get_account, {"id": parse_uuid("id", account_id)})
    if row is None:
        fail(404, "not_found", "no such account")
    return json_response(present(row))


@blueprint.post("/api/accounts/<account_id>/api-keys")
async def create_api_key(account_id: str) -> Response:
    require_admin()
    body = await json_body()
    name = body.text("name") or ""
    body.done()
    key_id, key = new_api_key()
    params = {"account_id": parse_uuid("id", account_id), "key_id": key_id,
              "key_hash": await hash_secret(key), "name": name}
    try:
        row = await database().fetch_one(SQL.insert_api_key, params)
    except ConstraintViolation as err:
        if err.kind == "foreign_key":
            fail(404, "not_found", "no such account")
        raise
    assert row is not None
    # The key is shown here once; only its bcrypt hash is stored.
    return json_response({"id": row["id"], "accountId": row["account_id"], "name": row["name"],
                          "apiKey": key, "createdAt": row["created_at"]}, 201)
