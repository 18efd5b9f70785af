"""Locations: where stations are installed, owned by an account."""

from __future__ import annotations

import uuid
from decimal import Decimal

from quart import Blueprint, Response

from ..db import SQL, ConstraintViolation, Row
from .app import check_account, database, fail, invalid, json_response, scoped_account
from .spec import (
    Boolean,
    Number,
    Obj,
    Owner,
    Page,
    Text,
    Timestamp,
    Uuid,
    body,
    operation,
    page,
    page_query,
    parse_uuid,
    query,
)

blueprint = Blueprint("locations", __name__)

LOCATION = Obj("Location", {
    "id": Uuid(), "accountId": Uuid(), "name": Text(), "address": Text(),
    "latitude": Number(), "longitude": Number(), "isPublic": Boolean(), "isActive": Boolean(),
    "createdAt": Timestamp(), "updatedAt": Timestamp()},
    "A physical place where stations are installed.")
NEW_LOCATION = Obj("LocationCreate", {
    "accountId": Owner(),
    "name": Text(required=True),
    "address": Text(required=True, max_len=500),
    "latitude": Number("Degrees north (WGS 84).", required=True, low=Decimal(-90),
                       high=Decimal(90)),
    "longitude": Number("Degrees east (WGS 84).", required=True, low=Decimal(-180),
                        high=Decimal(180)),
    "isPublic": Boolean(default=False),
    "isActive": Boolean(default=True)})
ACCOUNT_FILTER = Uuid("Only this account's (an account key: its own only).")


@blueprint.post("/api/locations")
@operation("Create a location", body=NEW_LOCATION, responses={201: LOCATION})
async def create_location() -> Response:
    data = await body()
    params = {"account_id": data["accountId"], "name": data["name"],
              "address": data["address"], "latitude": data["latitude"],
              "longitude": data["longitude"], "is_public": data["isPublic"],
              "is_active": data["isActive"]}
    try:
        row = await database().fetch_one(SQL.insert_location, params)
    except ConstraintViolation as err:
        if err.kind == "foreign_key":
            invalid("accountId", "no such account")
        raise
    assert row is not None
    return json_response(LOCATION.shape(row), 201)


@blueprint.get("/api/locations")
@operation("List locations", query={**page_query(), "accountId": ACCOUNT_FILTER},
           responses={200: Page(LOCATION)})
async def list_locations() -> Response:
    q = query()
    rows = await database().fetch_all(SQL.list_locations, {
        "account_id": await scoped_account(q["accountId"]), "limit": q["limit"],
        "offset": q["offset"]})
    return json_response(page([LOCATION.shape(r) for r in rows], q["limit"], q["offset"]))


async def load_location(location_id: uuid.UUID) -> Row:
    """The location, 404 if unknown, 403 if another account's."""
    row = await database().fetch_one(SQL.get_location, {"id": location_id})
    if row is None:
        fail(404, "not_found", "no such location")
    check_account(row["account_id"])
    return row


@blueprint.get("/api/locations/<location_id>")
@operation("Get a location", responses={200: LOCATION})
async def get_location(location_id: str) -> Response:
    return json_response(LOCATION.shape(await load_location(parse_uuid("id", location_id))))
