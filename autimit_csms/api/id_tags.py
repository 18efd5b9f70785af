"""Id tags (RFID cards, app tokens) that may authorize charging, per account."""

from __future__ import annotations

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

blueprint = Blueprint("id_tags", __name__)

ID_TAG_PATTERN = r"[\x21-\x7e]{1,20}"  # OCPP CiString20, printable, no spaces
STATUSES = ("active", "blocked")


def present(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "accountId": row["account_id"], "idTag": row["id_tag"],
            "status": row["status"], "expiresAt": row["expires_at"],
            "parentIdTag": row["parent_id_tag"], "label": row["label"],
            "createdAt": row["created_at"], "updatedAt": row["updated_at"]}


@blueprint.post("/api/id-tags")
async def create_id_tag() -> Response:
    body = await json_body()
    account_id = body.uuid("accountId", required=principal().is_admin) or principal().account_id
    assert account_id is not None
    check_account(account_id)
    params = {
        "account_id": account_id,
        "id_tag": body.text("idTag", required=True, max_len=20, pattern=ID_TAG_PATTERN),
        "status": body.choice("status", STATUSES) or "active",
        "expires_at": body.timestamp("expiresAt"),
        "parent_id_tag": body.text("parentIdTag", max_len=20, pattern=ID_TAG_PATTERN),
        "label": body.text("label") or "",
    }
    body.done()
    try:
        row = await database().fetch_one(SQL.insert_id_tag, params)
    except ConstraintViolation as err:
        if err.kind == "unique":
            fail(409, "duplicate_id_tag", "this account already has this idTag (any case)")
        if err.kind == "foreign_key":
            invalid("accountId", "no such account")
        raise
    assert row is not None
    return json_response(present(row), 201)


@blueprint.get("/api/id-tags")
async def list_id_tags() -> Response:
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.list_id_tags, {
        "account_id": await scoped_account(query_uuid("accountId")), "limit": limit,
        "offset": offset})
    return json_response(page([present(r) for r in rows], limit, offset))


@blueprint.patch("/api/id-tags/<tag_id>")
async def update_id_tag(tag_id: str) -> Response:
    """Block or unblock a tag, change its expiry or label."""
    db = database()
    key = {"id": parse_uuid("id", tag_id)}
    current = await db.fetch_one(SQL.get_id_tag, key)
    if current is None:
        fail(404, "not_found", "no such id tag")
    check_account(current["account_id"])
    body = await json_body()
    params = {**key, "status": body.choice("status", STATUSES),
              "set_expires_at": body.present("expiresAt"),
              "expires_at": body.timestamp("expiresAt"), "label": body.text("label")}
    body.done()
    row = await db.fetch_one(SQL.update_id_tag, params)
    if row is None:
        fail(404, "not_found", "no such id tag")
    return json_response(present(row))
