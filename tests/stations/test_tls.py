"""WSS and HTTPS when a certificate is configured (security profile 2 transport)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import trio
import trustme
from trio_websocket import open_websocket_url

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN, server_settings
from .conftest import basic, boot, provision


async def test_wss_and_https_with_configured_certificate(
        db: Database, db_url: str, nursery: trio.Nursery, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    server: Server = await nursery.start(Server(server_settings(
        db_url, tls_cert=str(cert_file), tls_key=str(key_file)), db).run)

    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    assert server.api_urls[0].startswith("https://")
    async with httpx.AsyncClient(base_url=server.api_urls[0], verify=client_ctx,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        station = await provision(api, code="TLS-1")

    url = f"wss://127.0.0.1:{server.ocpp_port}/ocpp/1.6/{station.code}"
    async with open_websocket_url(url, ssl_context=client_ctx, subprotocols=["ocpp1.6"],
                                  extra_headers=[basic(station.code, station.secret)]) as ws:
        await boot(ws)

    # TLS below 1.2 is not offered (security whitepaper §2); the same context
    # serves every connection.
    assert server.ocpp.ssl_context().minimum_version == ssl.TLSVersion.TLSv1_2
    server.stop()
