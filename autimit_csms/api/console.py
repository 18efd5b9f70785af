"""The operator console's static files at /console/, in front of the API's routing.

Owns: answering GET/HEAD under /console from the files of `autimit_csms/console/`
(read once at start-up, each with its ETag) with the headers a browser must obey --
a Content-Security-Policy that allows only this origin and no inline script or style,
nosniff, no framing, no referrer. The console is a client of the REST API like any
other and reaches the data only through it, so it is not a route of the API: no
token, no OpenAPI entry. It must not read the database or hold API logic.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent / "console"
PREFIX: Final = "/console"
CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # revalidated on every load, so an upgraded server never runs yesterday's script
    (b"cache-control", b"no-cache"),
)
TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".md": "text/plain; charset=utf-8",
                ".svg": "image/svg+xml"}

Asgi = Callable[[Any, Any, Any], Awaitable[None]]


def load_files(root: Path = ROOT) -> dict[str, tuple[bytes, str, str]]:
    """URL path under /console/ -> (content, media type, ETag), for every file of `root`."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        content = path.read_bytes()
        media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or (
            "application/octet-stream")
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        files[path.relative_to(root).as_posix()] = (content, media, etag)
    files[""] = files["index.html"]
    return files


def serve_console(api: Asgi, files: dict[str, tuple[bytes, str, str]] | None = None) -> Asgi:
    """`api` with /console/ answered from `files` (by default the package's) before it."""
    files = load_files() if files is None else files

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await api(scope, receive, send)
            return
        headers = list(SECURITY_HEADERS)
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
            headers += [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain")]
        elif path == PREFIX:
            status, body = 308, b""
            headers.append((b"location", (PREFIX + "/").encode()))
        elif (found := files.get(path[len(PREFIX) + 1:])) is None:
            status, body = 404, b"not found\n"
            headers.append((b"content-type", b"text/plain"))
        else:
            content, media, etag = found
            headers += [(b"content-type", media.encode()), (b"etag", etag.encode())]
            asked = dict(scope.get("headers", ())).get(b"if-none-match", b"").decode("latin-1")
            status, body = (304, b"") if etag in asked else (200, content)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return app
