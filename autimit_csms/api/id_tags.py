"""Id tags (RFID cards, app tokens) that may authorize charging, per account."""

from __future__ import annotations

from quart import Blueprint, Response

from ..db import SQL, ConstraintViolation
from .app import check_account, database, fail, invalid, json_response, scoped_account
from .locations import ACCOUNT_FILTER
from .spec import (
    Choice,
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

blueprint = Blueprint("id_tags", __name__)

ID_TAG_PATTERN = r"[\x21-\x7e]{1,20}"  # OCPP CiString20, printable, no spaces
STATUSES = ("active", "blocked")

ID_TAG = Obj("IdTag", {
    "id": Uuid(), "accountId": Uuid(), "idTag": Text(), "status": Choice(STATUSES),
    "expiresAt": Timestamp(null=True), "parentIdTag": Text(null=True), "label": Text(),
    "createdAt": Timestamp(), "updatedAt": Timestamp()},
    "An RFID card or app token that may authorize charging at the account's stations.")
NEW_ID_TAG = Obj("IdTagCreate", {
    "accountId": Owner(),
    "idTag": Text("OCPP CiString20: printable, no spaces; unique per account in any case.",
                  required=True, max_len=20, pattern=ID_TAG_PATTERN),
    "status": Choice(STATUSES, default="active"),
    "expiresAt": Timestamp("After it, the tag is answered Expired."),
    "parentIdTag": Text(max_len=20, pattern=ID_TAG_PATTERN),
    "label": Text("Who holds it.")})
ID_TAG_PATCH = Obj("IdTagUpdate", {
    "status": Choice(STATUSES, "`blocked` refuses it at every station."),
    "expiresAt": Timestamp("null removes the expiry; absent leaves it."),
    "label": Text()},
    "Absent members are left as they are.")


@blueprint.post("/api/id-tags")
@operation("Create an id tag", body=NEW_ID_TAG, responses={201: ID_TAG},
           errors={409: "The account already has this idTag (in any letter case)."})
async def create_id_tag() -> Response:
    data = await body()
    params = {"account_id": data["accountId"], "id_tag": data["idTag"],
              "status": data["status"], "expires_at": data["expiresAt"],
              "parent_id_tag": data["parentIdTag"], "label": data["label"] or ""}
    try:
        row = await database().fetch_one(SQL.insert_id_tag, params)
    except ConstraintViolation as err:
        if err.kind == "unique":
            fail(409, "duplicate_id_tag", "this account already has this idTag (any case)")
        if err.kind == "foreign_key":
            invalid("accountId", "no such account")
        raise
    assert row is not None
    return json_response(ID_TAG.shape(row), 201)


@blueprint.get("/api/id-tags")
@operation("List id tags", query={**page_query(), "accountId": ACCOUNT_FILTER},
           responses={200: Page(ID_TAG)})
async def list_id_tags() -> Response:
    q = query()
    rows = await database().fetch_all(SQL.list_id_tags, {
        "account_id": await scoped_account(q["accountId"]), "limit": q["limit"],
        "offset": q["offset"]})
    return json_response(page([ID_TAG.shape(r) for r in rows], q["limit"], q["offset"]))


@blueprint.patch("/api/id-tags/<tag_id>")
@operation("Block, unblock, expire or relabel an id tag", body=ID_TAG_PATCH,
           responses={200: ID_TAG})
async def update_id_tag(tag_id: str) -> Response:
    db = database()
    key = {"id": parse_uuid("id", tag_id)}
    current = await db.fetch_one(SQL.get_id_tag, key)
    if current is None:
        fail(404, "not_found", "no such id tag")
    check_account(current["account_id"])
    data = await body()
    row = await db.fetch_one(SQL.update_id_tag, {
        **key, "status": data["status"], "set_expires_at": "expiresAt" in data.given,
        "expires_at": data["expiresAt"], "label": data["label"]})
    if row is None:
        fail(404, "not_found", "no such id tag")
    return json_response(ID_TAG.shape(row))
