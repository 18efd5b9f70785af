"""Locations: where stations are installed, owned by an account."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from quart import Blueprint, Response

from ..db import SQL, ConstraintViolation, Row
from .app import (
    check_account,
    database,
    fail,
    invalid,
    json_body,
    json_response,
    page,
    page_args,
    parse_uuid,
    principal,
    query_uuid,
    scoped_account,
)

blueprint = Blueprint("locations", __name__)


def present(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "accountId": row["account_id"], "name": row["name"],
            "address": row["address"], "latitude": row["latitude"],
            "longitude": row["longitude"], "isPublic": row["is_public"],
            "isActive": row["is_active"], "createdAt": row["created_at"],
            "updatedAt": row["updated_at"]}


@blueprint.post("/api/locations")
async def create_location() -> Response:
    body = await json_body()
    account_id = body.uuid("accountId", required=principal().is_admin) or principal().account_id
    assert account_id is not None
    check_account(account_id)
    params = {
        "account_id": account_id,
        "name": body.text("name", required=True),
        "address": body.text("address", required=True, max_len=500),
        "latitude": body.number("latitude", required=True, low=Decimal(-90), high=Decimal(90)),
        "longitude": body.number("longitude", required=True, low=Decimal(-180),
                                 high=Decimal(180)),
        "is_public": body.boolean("isPublic", default=False),
        "is_active": body.boolean("isActive", default=True),
    }
    body.done()
    try:
        row = await database().fetch_one(SQL.insert_location, params)
    except ConstraintViolation as err:
        if err.kind == "foreign_key":
            invalid("accountId", "no such account")
        raise
    assert row is not None
    return json_response(present(row), 201)


@blueprint.get("/api/locations")
async def list_locations() -> Response:
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.list_locations, {
        "account_id": await scoped_account(query_uuid("accountId")), "limit": limit,
        "offset": offset})
    return json_response(page([present(r) for r in rows], limit, offset))


async def load_location(location_id: uuid.UUID) -> Row:
    """The location, 404 if unknown, 403 if another account's."""
    row = await database().fetch_one(SQL.get_location, {"id": location_id})
    if row is None:
        fail(404, "not_found", "no such location")
    check_account(row["account_id"])
    return row


@blueprint.get("/api/locations/<location_id>")
async def get_location(location_id: str) -> Response:
    return json_response(present(await load_location(parse_uuid("id", location_id))))
