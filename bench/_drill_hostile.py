"""The `hostile` drill: hostile REST inputs and OCPP frames, each with the answer issue 7
specifies, the answer observed, and PASS/FAIL.

Owns the two tables of inputs and how an answer is judged. REST: never a 5xx, never an
internal (traceback, driver name) in a body, the specified status, and for a 422 the
field named. OCPP: each frame is sent on its own connection followed by a Heartbeat
probe; what arrives before the probe's answer is the frame's answer, and the probe's
answer proves the connection is still usable.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from typing import Any

import httpx
import trio
from _drill_common import (
    Cluster,
    Serve,
    Station,
    admin_headers,
    boot,
    new_account,
    open_charger,
    provision,
)
from trio_websocket import ConnectionClosed

NUL, SURROGATE = "bad\x00value", "bad\ud800value"  # json.dumps writes \u0000 and \ud800
DEEP = '{"a":' * 10_000 + "1" + "}" * 10_000
INTERNALS = ("Traceback", "psycopg", 'File "', "RecursionError", "UnicodeEncodeError")
_codes = itertools.count(1)


@dataclass
class Result:
    group: str
    case: str
    expected: str
    observed: str
    ok: bool


# ---------------------------------------------------------------- REST


async def rest(client: httpx.AsyncClient, group: str, case: str, method: str, path: str,
               body: Any = None, *, expect: tuple[int, ...], field: str | None = None
               ) -> Result:
    if isinstance(body, dict):
        content: bytes | None = json.dumps(body).encode()
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = body
    try:
        r = await client.request(method, path, content=content,
                                 headers={"Content-Type": "application/json"})
    except httpx.HTTPError as err:
        return Result(group, case, _expected(expect, field), f"no answer ({err!r})", False)
    try:
        error = r.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    named = error.get("field") or ""
    observed = f"{r.status_code} {error.get('code', '')}".strip()
    if named:
        observed += f" field={named}"
    ok = r.status_code in expect and r.status_code < 500
    if field is not None and r.status_code == 422:
        ok = ok and (named == field or field in error.get("message", ""))
    leaked = [word for word in INTERNALS if word in r.text]
    if leaked:
        ok, observed = False, observed + f" LEAKS {leaked}"
    return Result(group, case, _expected(expect, field), observed, ok)


def _expected(expect: tuple[int, ...], field: str | None) -> str:
    text = "/".join(map(str, expect))
    return f"{text} naming {field}" if field and 422 in expect else text


def station_body(account_id: str, location_id: str, **extra: Any) -> dict[str, Any]:
    return {"accountId": account_id, "locationId": location_id,
            "stationCode": f"HX-{next(_codes):04d}", "connectors": 1, **extra}


async def rest_results(admin: httpx.AsyncClient, tenant: httpx.AsyncClient,
                       a: tuple[str, str], b: tuple[str, str], online: Station,
                       offline: Station, foreign: Station, a_tag: str, b_tag: str
                       ) -> list[Result]:
    a_acc, a_loc = a
    b_acc, b_loc = b
    out: list[Result] = []

    # bodies: (path, method, a valid body, its free-text fields)
    bodies: list[tuple[str, str, Any, list[str]]] = [
        ("/api/accounts", "POST", lambda: {"name": "N", "document": "D"}, ["name", "document"]),
        ("/api/locations", "POST", lambda: {"accountId": a_acc, "name": "L", "address": "A",
                                            "latitude": 1, "longitude": 2},
         ["name", "address"]),
        ("/api/stations", "POST", lambda: station_body(a_acc, a_loc),
         ["serialNumber", "manufacturer", "model", "stationCode"]),
        (f"/api/stations/{online.id}", "PATCH", lambda: {},
         ["serialNumber", "manufacturer", "model"]),
        ("/api/id-tags", "POST", lambda: {"accountId": a_acc, "idTag": f"T{next(_codes)}"},
         ["label", "idTag"]),
        (f"/api/id-tags/{a_tag}", "PATCH", lambda: {}, ["label"]),
        (f"/api/accounts/{a_acc}/api-keys", "POST", lambda: {}, ["name"]),
    ]
    group = "REST body"
    for path, method, valid, fields in bodies:
        short = f"{method} {path.split('/')[2]}{' :id' if method == 'PATCH' else ''}"
        if path.endswith("/api-keys"):
            short = "POST api-keys"
        out.append(await rest(admin, group, f"{short}: 10,000-deep JSON", method, path, DEEP,
                              expect=(400,)))
        for field_name in fields:
            for label, bad in (("NUL", NUL), ("lone surrogate", SURROGATE)):
                body = {**valid(), field_name: bad}
                out.append(await rest(admin, group, f"{short}: {label} in {field_name}", method,
                                      path, body, expect=(422,), field=field_name))

    group = "REST command"
    commands = f"/api/stations/{offline.id}/commands"
    for label, payload in [
        ("DataTransfer with NUL", {"vendorId": "v\x00", "messageId": "m\x00", "data": "d\x00"}),
        ("DataTransfer with lone surrogate", {"vendorId": "v", "data": "d\ud800"}),
        ("RemoteStartTransaction idTag with NUL", {"idTag": "T\x00"}),
        ("ChangeConfiguration key with NUL", {"key": "K\x00", "value": "v"}),
        ("Reset (plain)", {"type": "Soft"}),
    ]:
        action = label.split()[0]
        out.append(await rest(admin, group, f"offline station: {label}", "POST",
                              f"{commands}/{action}", payload, expect=(409,)))
    out.append(await rest(admin, group, "offline station: DataTransfer 10,000-deep", "POST",
                          f"{commands}/DataTransfer", DEEP, expect=(400,)))

    group = "REST size/shape"
    out += [
        await rest(admin, group, "2 MiB body", "POST", "/api/accounts",
                   '{"name":"' + "x" * (2 << 20) + '","document":"d"}', expect=(413,)),
        await rest(admin, group, "truncated JSON", "POST", "/api/accounts", '{"name":',
                   expect=(400,)),
        await rest(admin, group, "invalid UTF-8", "POST", "/api/accounts", b'{"name":"\xff\xfe"}',
                   expect=(400,)),
        await rest(admin, group, "array body", "POST", "/api/accounts", "[]", expect=(400,)),
        await rest(admin, group, "NaN", "POST", "/api/locations",
                   '{"accountId":"' + a_acc + '","name":"L","address":"A","latitude":NaN,'
                   '"longitude":1}', expect=(400,)),
        await rest(admin, group, "5,000-digit integer", "POST", "/api/stations",
                   json.dumps(station_body(a_acc, a_loc))[:-1] + ',"x":' + "9" * 5000 + "}",
                   expect=(400, 422)),
        await rest(admin, group, "latitude 1e999999", "POST", "/api/locations",
                   '{"accountId":"' + a_acc + '","name":"L","address":"A",'
                   '"latitude":1e999999,"longitude":1}', expect=(422,), field="latitude"),
        await rest(admin, group, "NUL in a key", "POST", "/api/accounts",
                   {"name": "N", "document": "D", "na\x00me": "x"}, expect=(400, 422)),
        await rest(admin, group, "10,000-char stationCode", "POST", "/api/stations",
                   station_body(a_acc, a_loc, stationCode="A" * 10_000), expect=(422,),
                   field="stationCode"),
        await rest(admin, group, "expiresAt year 99999", "POST", "/api/id-tags",
                   {"accountId": a_acc, "idTag": "Y99999", "expiresAt": "99999-01-01T00:00:00Z"},
                   expect=(422,), field="expiresAt"),
        await rest(admin, group, "non-UUID id in path", "GET", "/api/stations/not-a-uuid",
                   expect=(404, 422)),
        await rest(admin, group, "NUL in a query UUID", "GET", "/api/stations?locationId=%00",
                   expect=(422,), field="locationId"),
        await rest(admin, group, "limit=99999999999", "GET", "/api/stations?limit=99999999999",
                   expect=(422,), field="limit"),
        await rest(admin, group, "unknown action", "POST",
                   f"/api/stations/{offline.id}/commands/Explode", {}, expect=(404,)),
    ]
    async with httpx.AsyncClient(base_url=str(admin.base_url), timeout=30, headers={
            "Authorization": "Bearer " + "x" * 60_000}) as huge:
        out.append(await rest(huge, group, "60,000-char bearer token", "GET", "/api/stations",
                              expect=(400, 401, 431)))

    group = "REST tenant"
    fid = foreign.id
    for case, method, path, body in [
        ("stations?locationId=<B's location>", "GET", f"/api/stations?locationId={b_loc}", None),
        ("stations?accountId=<B>", "GET", f"/api/stations?accountId={b_acc}", None),
        ("locations?accountId=<B>", "GET", f"/api/locations?accountId={b_acc}", None),
        ("id-tags?accountId=<B>", "GET", f"/api/id-tags?accountId={b_acc}", None),
        ("sessions?stationId=<B's station>", "GET", f"/api/sessions?stationId={fid}", None),
        ("sessions?accountId=<B>", "GET", f"/api/sessions?accountId={b_acc}", None),
        ("availability?stationId=<B's>", "GET", f"/api/availability?stationId={fid}", None),
        ("availability?locationId=<B's>", "GET", f"/api/availability?locationId={b_loc}", None),
        ("GET B's station", "GET", f"/api/stations/{fid}", None),
        ("GET B's location", "GET", f"/api/locations/{b_loc}", None),
        ("B's station meter-values", "GET", f"/api/stations/{fid}/meter-values", None),
        ("B's station status-history", "GET", f"/api/stations/{fid}/status-history", None),
        ("B's station commands", "GET", f"/api/stations/{fid}/commands", None),
        ("B's station configuration", "GET", f"/api/stations/{fid}/configuration", None),
        ("PATCH B's id tag", "PATCH", f"/api/id-tags/{b_tag}", {"label": "mine"}),
        ("PATCH B's station", "PATCH", f"/api/stations/{fid}", {"isActive": False}),
        ("command to B's station", "POST", f"/api/stations/{fid}/commands/Reset",
         {"type": "Soft"}),
        ("id tag in account B", "POST", "/api/id-tags", {"accountId": b_acc, "idTag": "STEAL"}),
    ]:
        out.append(await rest(tenant, group, f"A's key: {case}", method, path, body,
                              expect=(403,)))
    out.append(await rest(tenant, group, "A's key: station in B's location", "POST",
                          "/api/stations", {"locationId": b_loc, "stationCode": "STEAL-1",
                                            "connectors": 1}, expect=(403, 422)))
    return out


# ---------------------------------------------------------------- OCPP


@dataclass
class Expect:
    kind: str                       # error | result | answer | silence | close
    unique_id: str | None = None
    codes: tuple[str, ...] = ()     # acceptable CALLERROR codes (empty: any)

    def text(self) -> str:
        if self.kind == "silence":
            return "no answer; usable"
        if self.kind == "close":
            return f"closed {self.codes[0]}"
        if self.kind == "result":
            return f"CALLRESULT {self.unique_id}; usable"
        if self.kind == "answer":
            return f"answer to {self.unique_id}, not InternalError; usable"
        return f"CALLERROR {'|'.join(self.codes) or 'any'} id={self.unique_id!r}; usable"


def ocpp_frames(now: str) -> list[tuple[str, str | bytes, Expect]]:
    def frame(unique_id: Any, action: str, payload: dict[str, Any]) -> str:
        return json.dumps([2, unique_id, action, payload])

    status = {"connectorId": 1, "status": "Available", "errorCode": "NoError"}
    return [
        ("broken JSON, readable id (sampledValue [,{...}])",
         '[2,"broken-1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"' + now
         + '","sampledValue":[,{"value":"1"}]}]}]',
         Expect("error", "broken-1", ("FormationViolation",))),
        ("truncated JSON, readable id", '[2,"trunc-1","Heartbeat",{',
         Expect("error", "trunc-1", ("FormationViolation",))),
        ("numeric unique id", '[2,12345,"Heartbeat",{}]', Expect("error", "12345")),
        ("not JSON, no id", "hello charger", Expect("silence")),
        ("[2,id] only", '[2,"short-1"]', Expect("error", "short-1", ("FormationViolation",))),
        ("message type as a string", '["2","mts-1","Heartbeat",{}]',
         Expect("error", "mts-1", ("FormationViolation",))),
        ("payload is an array", '[2,"arr-1","Heartbeat",[]]',
         Expect("error", "arr-1", ("FormationViolation", "TypeConstraintViolation"))),
        ("unknown message type 7", '[7,"mt-7",{}]', Expect("silence")),
        ("CALLRESULT for an unknown id", '[3,"nobody-1",{}]', Expect("silence")),
        ("CALLERROR for an unknown id", '[4,"nobody-2","GenericError","",{}]',
         Expect("silence")),
        ("binary frame", b"\x00\x01\x02binary", Expect("silence")),
        ("37-character unique id", frame("x" * 37, "Heartbeat", {}),
         Expect("error", None, ("ProtocolError", "FormationViolation"))),
        ("unknown action", frame("ua-1", "Explode", {}),
         Expect("error", "ua-1", ("NotImplemented",))),
        ("CSMS-only action Reset", frame("rs-1", "Reset", {"type": "Soft"}),
         Expect("error", "rs-1", ("NotSupported",))),
        ("NUL-padded BootNotification strings", frame("nulboot-1", "BootNotification", {
            "chargePointVendor": "Vendor\x00\x00\x00", "chargePointModel": "Model\x00\x00",
            "chargePointSerialNumber": "SN\x00", "firmwareVersion": "1.0\x00\x00"}),
         Expect("result", "nulboot-1")),
        ("lone surrogate in BootNotification model", frame("surboot-1", "BootNotification", {
            "chargePointVendor": "Vendor", "chargePointModel": "M\ud800"}),
         Expect("answer", "surboot-1")),
        ("NUL in StatusNotification info", frame("nulstat-1", "StatusNotification", {
            **status, "info": "door\x00\x00", "vendorErrorCode": "E\x00"}),
         Expect("result", "nulstat-1")),
        ("lone surrogate in StatusNotification info", frame("surstat-1", "StatusNotification",
                                                             {**status, "info": "x\udfff"}),
         Expect("answer", "surstat-1")),
        ("NUL in DataTransfer vendorId/data", frame("nuldt-1", "DataTransfer", {
            "vendorId": "acme\x00", "messageId": "m\x00", "data": "d\x00"}),
         Expect("answer", "nuldt-1")),
        ("NUL in Authorize idTag", frame("nulauth-1", "Authorize", {"idTag": "AB\x00"}),
         Expect("answer", "nulauth-1")),
        ("NUL in a MeterValues value", frame("nulmv-1", "MeterValues", {
            "connectorId": 1, "meterValue": [{"timestamp": now, "sampledValue": [
                {"value": "12\x00"}]}]}),
         Expect("answer", "nulmv-1")),
        ("10,000-deep payload, readable id",
         '[2,"deep-1","DataTransfer",{"vendorId":"v","x":' + "[" * 10_000 + "]" * 10_000
         + "}]", Expect("error", "deep-1")),
        ("5,000-digit connectorId", '[2,"bigint-1","StatusNotification",{"connectorId":'
         + "9" * 5000 + ',"status":"Available","errorCode":"NoError"}]',
         Expect("error", "bigint-1")),
        ("frame above --max-frame-bytes (70,000 chars)",
         frame("big-1", "DataTransfer", {"vendorId": "v", "data": "x" * 70_000}),
         Expect("close", None, ("1009",))),
    ]


def describe(answer: list[Any]) -> str:
    if answer[0] == 4:
        return f"CALLERROR {answer[2]} id={answer[1]!r}"
    return f"{'CALLRESULT' if answer[0] == 3 else answer[0]} id={answer[1]!r}"


async def send_frame(port: int, station: Station, text: str | bytes, expect: Expect,
                     flood: int = 0) -> tuple[str, bool]:
    """Send `text` (or `flood` Heartbeats), then a probe; judge what came back."""
    answers: list[list[Any]] = []
    closed: str | None = None
    probe_ok = False
    try:
        async with open_charger(port, station) as ws:
            if flood:
                for n in range(flood):
                    await ws.send_message(json.dumps([2, f"flood-{n}", "Heartbeat", {}]))
            else:
                await ws.send_message(text)
            await ws.send_message(json.dumps([2, "probe", "Heartbeat", {}]))
            with trio.move_on_after(20):
                while True:
                    raw = await ws.get_message()
                    answer = json.loads(raw)
                    if answer[1] == "probe":
                        probe_ok = answer[0] == 3
                        break
                    answers.append(answer)
    except ConnectionClosed as err:
        closed = str(err.reason.code)
    except Exception as err:  # noqa: BLE001 - the drill reports whatever happens
        closed = type(err).__name__
    if flood:
        ids = {a[1] for a in answers}
        kinds = {describe(a).split(" id=")[0] for a in answers}
        observed = (f"{len(ids)}/{flood} answered ({', '.join(sorted(kinds))}); "
                    + ("usable" if probe_ok else f"NOT usable (closed {closed})"))
        return observed, len(ids) == flood and probe_ok
    observed = "; ".join(describe(a) for a in answers) or "no answer"
    observed += "; usable" if probe_ok else f"; closed {closed}" if closed else "; no probe answer"
    if expect.kind == "close":
        return observed, closed in expect.codes
    if not probe_ok:
        return observed, False
    if expect.kind == "silence":
        return observed, not answers
    if len(answers) != 1:
        return observed, False
    answer = answers[0]
    if expect.unique_id is not None and answer[1] != expect.unique_id:
        return observed, False
    if expect.kind == "result":
        return observed, answer[0] == 3
    if expect.kind == "answer":
        return observed, answer[0] == 3 or (answer[0] == 4 and answer[2] != "InternalError")
    return observed, answer[0] == 4 and (not expect.codes or answer[2] in expect.codes)


async def healthy(serve: Serve, station: Station) -> bool:
    """The process runs, the API answers and a charger is admitted."""
    await trio.sleep(0.2)
    if serve.proc is None or serve.proc.poll() is not None:
        return False
    try:
        async with httpx.AsyncClient(base_url=serve.api, headers=admin_headers(),
                                     timeout=5) as http:
            if (await http.get("/api/locations?limit=1")).status_code != 200:
                return False
        async with open_charger(serve.ocpp_port, station, timeout=5) as ws:
            await ws.send_message(json.dumps([2, "health", "Heartbeat", {}]))
            with trio.fail_after(5):
                return bool(json.loads(await ws.get_message())[0] == 3)
    except Exception:  # noqa: BLE001
        return False


async def ocpp_results(serve: Serve, station: Station, cluster: Cluster) -> list[Result]:
    async with open_charger(serve.ocpp_port, station) as ws:
        await boot(ws)  # registration persists across connections
    now = "2026-01-01T00:00:00Z"
    out = []
    port = serve.ocpp_port
    for case, text, expect in ocpp_frames(now):
        observed, ok = await send_frame(port, station, text, expect)
        if not await healthy(serve, station):
            # so the rows after it still say something: note it, start a new process
            await trio.to_thread.run_sync(serve.stop)  # waits for a dying process, or ends it
            exit_code = serve.proc.returncode if serve.proc else None
            await serve.start()
            observed, ok = f"{observed}; SERVER DOWN after it (exit {exit_code}), restarted", False
        out.append(Result("OCPP frame", case, expect.text(), observed, ok))
        if case.startswith("NUL-padded BootNotification"):
            stored = cluster.query(
                "SELECT reported_vendor, reported_model, reported_serial, firmware_version "
                "FROM station_runtime_state WHERE station_id = %s", station.id)[0]
            out.append(Result("OCPP frame", "  ... stored without NUL", "Vendor Model SN 1.0",
                              " ".join(map(repr, stored)),
                              list(stored) == ["Vendor", "Model", "SN", "1.0"]))
    observed, ok = await send_frame(port, station, "", Expect("answer"), flood=300)
    out.append(Result("OCPP frame", "CALL flood: 300 Heartbeats unawaited",
                      "each answered (result or error); usable", observed, ok))
    return out


# ---------------------------------------------------------------- drill


async def drill_hostile(args: argparse.Namespace, cluster: Cluster, serve: Serve) -> bool:
    await serve.start()
    async with httpx.AsyncClient(base_url=serve.api, headers=admin_headers(),
                                 timeout=30) as admin:
        a = await new_account(admin, "Tenant A")
        b = await new_account(admin, "Tenant B")
        online, offline = await provision(admin, 2, "HOSTILE", a)
        (foreign,) = await provision(admin, 1, "FOREIGN", b)
        key = (await admin.post(f"/api/accounts/{a[0]}/api-keys", json={"name": "drill"})
               ).json()["apiKey"]
        tags = []
        for account, tag in ((a[0], "DRILLA"), (b[0], "DRILLB")):
            r = await admin.post("/api/id-tags", json={"accountId": account, "idTag": tag})
            tags.append(r.json()["id"])
        async with httpx.AsyncClient(base_url=serve.api, headers=admin_headers(key),
                                     timeout=30) as tenant:
            results = await rest_results(admin, tenant, a, b, online, offline, foreign, *tags)
    results += await ocpp_results(serve, online, cluster)
    restarts = sum("SERVER DOWN" in r.observed for r in results)
    alive = await healthy(serve, online)
    results.append(Result("process", "serve never went down, still answering",
                          "0 restarts; answering",
                          f"{restarts} restarts; {'answering' if alive else 'NOT answering'}",
                          alive and restarts == 0))
    print_results(results)
    return all(r.ok for r in results)


def print_results(results: list[Result]) -> None:
    widths = [max(len(getattr(r, f)) for r in results) for f in ("case", "expected")]
    group = ""
    for r in results:
        if r.group != group:
            group = r.group
            print(f"\n{group}")
        print(f"  {'PASS' if r.ok else 'FAIL'}  {r.case:<{widths[0]}}  "
              f"{r.expected:<{widths[1]}}  {r.observed}")
    failed = sum(not r.ok for r in results)
    print(f"\n{len(results) - failed}/{len(results)} PASS, {failed} FAIL")
