"""Where simulated stations come from: a file of codes and secrets, or the REST API.

Owns reading and writing station files, and the REST calls with the admin token that
provision stations and id tags and read back what the CSMS recorded. It never logs or
prints a secret, an id tag or the token; a secret leaves this module only in the file
the user asked for.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import trio

DEFAULT_OCPP_URL: Final = "ws://127.0.0.1:9000/ocpp/1.6"
# Station creation hashes a secret with bcrypt on the server; a few at a time is plenty.
PROVISION_CONCURRENCY: Final = 4


class ProvisioningError(Exception):
    """The stations could not be found or created; the message says why (no secrets)."""


@dataclass(frozen=True)
class StationSpec:
    code: str
    secret: str = field(repr=False)
    url: str  # the station's full OCPP endpoint
    station_id: str | None = None
    account_id: str | None = None


def station_url(base: str, code: str) -> str:
    return f"{base.rstrip('/')}/{quote(code, safe='')}"


def read_station_file(path: Path, ocpp_url: str | None) -> list[StationSpec]:
    """Stations from `path`: lines `stationCode,secret` (CSV), or JSON objects with
    `stationCode`, `stationSecret` and optionally `ocppConnectionUrl` (the `provisioning`
    object of `POST /api/stations`, as `--save-stations` writes it). `#` starts a comment.
    `ocpp_url`, when given, overrides the file's URLs."""
    specs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url = None
        if line.startswith("{"):
            try:
                entry = json.loads(line)
                code, secret = entry["stationCode"], entry["stationSecret"]
                url = entry.get("ocppConnectionUrl")
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: expected a JSON object with stationCode "
                                 "and stationSecret") from None
        else:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{path}:{number}: expected `stationCode,secret`")
            code, secret = parts
        if ocpp_url is not None or not url:
            url = station_url(ocpp_url or DEFAULT_OCPP_URL, code)
        specs.append(StationSpec(code, secret, url))
    if not specs:
        raise ValueError(f"{path}: no stations in it")
    return specs


def write_station_file(path: Path, specs: list[StationSpec]) -> None:
    """JSON lines readable by `read_station_file`, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for spec in specs:
            out.write(json.dumps({"stationCode": spec.code, "ocppConnectionUrl": spec.url,
                                  "stationSecret": spec.secret}) + "\n")


class RestApi:
    """The few REST calls the simulator makes, as the admin."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201),
                       **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ProvisioningError(f"cannot reach the REST API at {self._client.base_url} "
                                    f"({err or type(err).__name__}); is the CSMS running, "
                                    "and is --api-url its API?") from None
        if response.status_code not in ok:
            try:
                error = response.json()["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                detail = response.text[:200]
            hint = " (check --admin-token / AUTIMIT_ADMIN_TOKEN)" \
                if response.status_code == 401 else ""
            raise ProvisioningError(f"{method} {path}: HTTP {response.status_code} "
                                    f"{detail}{hint}")
        return response.json() if response.content else None

    async def provision(self, count: int, *, connectors: int, prefix: str,
                        account_id: str | None, location_id: str | None,
                        ocpp_url: str | None) -> list[StationSpec]:
        """`count` new stations (in a new account and location unless given)."""
        if account_id is None:
            account = await self._request("POST", "/api/accounts", json={
                "name": "Autimit simulator", "document": "SIMULATOR"})
            account_id = account["id"]
        if location_id is None:
            location = await self._request("POST", "/api/locations", json={
                "accountId": account_id, "name": "Simulator site",
                "address": "1 Simulator Road", "latitude": 52.52, "longitude": 13.405})
            location_id = location["id"]
        run = secrets.token_hex(3).upper()  # codes of different runs never collide
        specs: list[StationSpec | None] = [None] * count
        errors: list[ProvisioningError] = []
        limiter = trio.CapacityLimiter(PROVISION_CONCURRENCY)

        async def create(index: int) -> None:
            code = f"{prefix}-{run}-{index + 1:03d}"
            async with limiter:
                if errors:
                    return
                try:
                    body = await self._request("POST", "/api/stations", json={
                        "accountId": account_id, "locationId": location_id,
                        "stationCode": code, "serialNumber": code[:64],
                        "manufacturer": "Autimit", "model": "Simulator",
                        "connectors": connectors})
                except ProvisioningError as err:  # reported once, not as an exception group
                    errors.append(err)
                    return
            given = body["provisioning"]
            url = given["ocppConnectionUrl"] if ocpp_url is None else station_url(ocpp_url,
                                                                                   code)
            specs[index] = StationSpec(given["stationCode"], given["stationSecret"], url,
                                       body["station"]["id"], account_id)

        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(create, index)
        if errors:
            raise errors[0]
        return [spec for spec in specs if spec is not None]

    async def identify(self, specs: list[StationSpec]) -> list[StationSpec]:
        """`specs` with their station and account ids, looked up by code (any case)."""
        by_code: dict[str, dict[str, Any]] = {}
        offset: int | None = 0
        while offset is not None:
            page = await self._request("GET", "/api/stations",
                                       params={"limit": 500, "offset": offset})
            by_code.update((item["stationCode"].lower(), item) for item in page["items"])
            offset = page["nextOffset"]
        missing = [spec.code for spec in specs if spec.code.lower() not in by_code]
        if missing:
            raise ProvisioningError(f"the CSMS has no station {', '.join(missing[:5])}")
        return [replace(spec, station_id=by_code[spec.code.lower()]["id"],
                        account_id=by_code[spec.code.lower()]["accountId"]) for spec in specs]

    async def ensure_id_tag(self, account_id: str, id_tag: str) -> None:
        """Register `id_tag` in the account (an existing one is fine)."""
        await self._request("POST", "/api/id-tags", ok=(201, 409), json={
            "accountId": account_id, "idTag": id_tag, "label": "autimit-csms simulate"})

    async def csms_view(self, spec: StationSpec) -> str:
        """One line: what the REST API says about the station and its latest sessions."""
        station = await self._request("GET", f"/api/stations/{spec.station_id}")
        sessions = await self._request("GET", "/api/sessions",
                                       params={"stationId": spec.station_id, "limit": 3})
        parts = [f"{s['status']} transaction {s['transactionId']} "
                 f"{_kwh(s['energyWh'])} ({s['energySource']})" for s in sessions["items"]]
        return (f"{spec.code}: station {station['runtime']['status']}; "
                + ("sessions: " + ", ".join(parts) if parts else "no sessions")
                + f"\n    GET /api/sessions?stationId={spec.station_id}")


def _kwh(energy_wh: Any) -> str:
    return "? kWh" if energy_wh is None else f"{float(energy_wh) / 1000:.2f} kWh"
