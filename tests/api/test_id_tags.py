"""Id tags over the REST API: create, list, block, expire, account scoping."""

from __future__ import annotations

import httpx

from autimit_csms.server import Server

from .test_provisioning import tenant


async def test_id_tag_lifecycle_and_scoping(api: httpx.AsyncClient, server: Server) -> None:
    a, _, client_a = await tenant(api, server, "A")
    b, _, client_b = await tenant(api, server, "B")
    async with client_a, client_b:
        r = await client_a.post("/api/id-tags", json={"idTag": "RFID-0001", "label": "Ann"})
        assert r.status_code == 201, r.text
        tag = r.json()
        assert tag["status"] == "active" and tag["accountId"] == a["id"]
        dup = await client_a.post("/api/id-tags", json={"idTag": "rfid-0001"})
        assert dup.status_code == 409
        # the same tag in another account is another tag
        assert (await client_b.post("/api/id-tags", json={"idTag": "RFID-0001"})
                ).status_code == 201
        for bad in ({"idTag": "x" * 21}, {"idTag": "has space"}, {"idTag": "ok", "status": "x"},
                    {"idTag": "ok", "expiresAt": "tomorrow"}, {}):
            r = await client_a.post("/api/id-tags", json=bad)
            assert r.status_code == 422, bad

        r = await client_a.patch(f"/api/id-tags/{tag['id']}",
                                 json={"status": "blocked", "expiresAt": "2030-01-01T00:00:00Z"})
        assert r.status_code == 200
        assert r.json()["status"] == "blocked"
        assert r.json()["expiresAt"] == "2030-01-01T00:00:00Z"
        r = await client_a.patch(f"/api/id-tags/{tag['id']}", json={"expiresAt": None})
        assert r.json()["expiresAt"] is None and r.json()["status"] == "blocked"

        assert (await client_b.patch(f"/api/id-tags/{tag['id']}", json={"status": "active"})
                ).status_code == 403
        listed = (await client_a.get("/api/id-tags")).json()["items"]
        assert [t["idTag"] for t in listed] == ["RFID-0001"]
        assert len((await api.get("/api/id-tags")).json()["items"]) == 2
