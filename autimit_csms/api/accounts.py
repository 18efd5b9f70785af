"""Accounts (tenants) and their API keys: admin only; and who the caller is (`/api/me`)."""

from __future__ import annotations

from quart import Blueprint, Response

from ..credentials import hash_secret, new_api_key
from ..db import SQL, ConstraintViolation
from .app import database, fail, json_response, principal, require_admin
from .spec import (
    Boolean,
    Choice,
    Obj,
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

blueprint = Blueprint("accounts", __name__)

ACCOUNT = Obj("Account", {
    "id": Uuid(), "name": Text(), "document": Text("Tax or company registration number."),
    "isActive": Boolean(), "createdAt": Timestamp(), "updatedAt": Timestamp()},
    "A tenant: the business that owns locations and stations.")
NEW_ACCOUNT = Obj("AccountCreate", {
    "name": Text(required=True),
    "document": Text("Tax or company registration number.", required=True, max_len=64),
    "isActive": Boolean(default=True)})
NEW_KEY = Obj("ApiKeyCreate", {"name": Text("A label for the key (who or what uses it).")})
API_KEY = Obj("ApiKey", {
    "id": Uuid(), "accountId": Uuid(), "name": Text(),
    "apiKey": Text("The key: send it as `Authorization: Bearer <apiKey>`. Shown only here, "
                   "once; only its bcrypt hash is stored.", source="api_key"),
    "createdAt": Timestamp()})
ME = Obj("Caller", {
    "role": Choice(("admin", "account"), "`admin`: the admin token; `account`: an account "
                                         "API key, which sees only its account."),
    "accountId": Uuid("The key's account; null for the admin token.", null=True),
    "apiKeyId": Text("The key's public id (never the key); null for the admin token.",
                     null=True, source="key_id"),
    "account": Obj(None, ACCOUNT.fields, null=True, source="account",
                   doc="The key's account; null for the admin token.")},
    "Who the bearer token is: what a client needs to show only what it may do.")


@blueprint.post("/api/accounts")
@operation("Create an account (admin)", body=NEW_ACCOUNT, responses={201: ACCOUNT})
async def create_account() -> Response:
    require_admin()
    data = await body()
    row = await database().fetch_one(SQL.insert_account, {
        "name": data["name"], "document": data["document"], "is_active": data["isActive"]})
    assert row is not None
    return json_response(ACCOUNT.shape(row), 201)


@blueprint.get("/api/accounts")
@operation("List accounts (admin)", query=page_query(), responses={200: Page(ACCOUNT)})
async def list_accounts() -> Response:
    require_admin()
    q = query()
    rows = await database().fetch_all(SQL.list_accounts, {"limit": q["limit"],
                                                          "offset": q["offset"]})
    return json_response(page([ACCOUNT.shape(r) for r in rows], q["limit"], q["offset"]))


@blueprint.get("/api/accounts/<account_id>")
@operation("Get an account (admin)", responses={200: ACCOUNT})
async def get_account(account_id: str) -> Response:
    require_admin()
    row = await database().fetch_one(SQL.get_account, {"id": parse_uuid("id", account_id)})
    if row is None:
        fail(404, "not_found", "no such account")
    return json_response(ACCOUNT.shape(row))


@blueprint.post("/api/accounts/<account_id>/api-keys")
@operation("Issue an account API key (admin)", body=NEW_KEY, responses={201: API_KEY},
           description="The key sees and changes only its account's data.")
async def create_api_key(account_id: str) -> Response:
    require_admin()
    data = await body()
    key_id, key = new_api_key()
    params = {"account_id": parse_uuid("id", account_id), "key_id": key_id,
              "key_hash": await hash_secret(key), "name": data["name"] or ""}
    try:
        row = await database().fetch_one(SQL.insert_api_key, params)
    except ConstraintViolation as err:
        if err.kind == "foreign_key":
            fail(404, "not_found", "no such account")
        raise
    assert row is not None
    # The key is shown here once; only its bcrypt hash is stored.
    return json_response(API_KEY.shape({**row, "api_key": key}), 201)


@blueprint.get("/api/me")
@operation("Who the bearer token is", responses={200: ME},
           description="The admin token, or an account API key and its account. A client "
                       "checks a token with it and hides what the token may not do.")
async def me() -> Response:
    caller = principal()
    account = None
    if caller.account_id is not None:
        account = await database().fetch_one(SQL.get_account, {"id": caller.account_id})
    return json_response(ME.shape({
        "role": "admin" if caller.is_admin else "account", "account_id": caller.account_id,
        "key_id": caller.key_id, "account": account}))
