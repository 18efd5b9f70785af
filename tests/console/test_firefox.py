"""The console in headless Firefox too: Debian's firefox-esr driven over WebDriver BiDi,
which Firefox speaks itself (`--remote-debugging-port`), so no geckodriver is needed.

The same server and simulated session as the Chromium tests (conftest.py); here: the
modules load and run, sign-in, the overview, a finished session's charts drawn on their
canvases, phone width, and no script error in Firefox's log. Skipped without Firefox;
.ci/run installs it and sets AUTIMIT_REQUIRE_BROWSER=1, which makes it required.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autimit_csms.localpg import free_port

from ..test_cli import TOKEN
from .conftest import TAKEN, Console, _missing, find, wait_session_done

FIREFOX = ("firefox-esr", "firefox")


class Firefox:
    """The few WebDriver BiDi commands these checks need, one at a time."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id, self.events = ws, 0, []  # type: list[dict[str, Any]]
        self.call("session.new", {"capabilities": {}})
        self.call("session.subscribe", {"events": ["log.entryAdded"]})
        self.context = self.call("browsingContext.getTree", {})["contexts"][0]["context"]

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert message.get("type") != "error", message
                return message["result"]
            self.events.append(message)

    def js(self, expression: str) -> Any:
        """The value of `expression` (a promise is awaited) in the page."""
        result = self.call("script.evaluate", {"expression": expression, "awaitPromise": True,
                                               "target": {"context": self.context}})
        assert result["type"] == "success", result
        return result["result"].get("value")

    def wait(self, expression: str, what: str, seconds: float = 15) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.js(f"(() => {{ try {{ return {expression}; }}"
                            " catch { return null; } })()")
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"Firefox: timed out waiting for {what}")

    def go(self, url: str) -> None:
        self.call("browsingContext.navigate", {"context": self.context, "url": url,
                                               "wait": "complete"})

    def shot(self, folder: Path, name: str) -> None:
        data = self.call("browsingContext.captureScreenshot",
                         {"context": self.context, "origin": "document"})["data"]
        path = folder / f"{name}.png"
        path.write_bytes(base64.b64decode(data))
        TAKEN.append(path)

    def errors(self) -> list[str]:
        return [e["params"].get("text") or "" for e in self.events
                if e.get("method") == "log.entryAdded" and e["params"].get("level") == "error"]


@pytest.fixture(scope="module")
def firefox() -> Iterator[Firefox]:
    binary = find(FIREFOX)
    if binary is None:
        _missing("no firefox-esr on PATH (Debian: apt-get install firefox-esr)")
    from websockets.sync.client import connect

    port = free_port()
    profile = tempfile.mkdtemp(prefix="autimit-firefox-")
    proc = subprocess.Popen([binary, "--headless", "--remote-debugging-port", str(port),
                             "--profile", profile, "--width", "1280", "--height", "900",
                             "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = connect(f"ws://127.0.0.1:{port}/session", max_size=None)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "Firefox did not start"
                time.sleep(0.2)
        with ws:
            yield Firefox(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", "--one-file-system", profile], check=False)


def test_the_console_works_in_firefox(firefox: Firefox, backend: Console,
                                      finished_session: dict[str, Any]) -> None:
    session = wait_session_done(backend, finished_session)
    firefox.go(f"{backend.base}/console/")
    # the sign-in form is shown by the script: the ES modules (and uPlot) loaded and ran
    firefox.wait("!document.getElementById('sign-in').hidden", "the sign-in form")
    firefox.js(f"document.getElementById('token').value = {json.dumps(TOKEN)};"
               " document.querySelector('#sign-in-form button').click()")
    firefox.wait("document.getElementById('updated').textContent.startsWith('Updated')",
                 "the overview")
    assert firefox.js("Object.values(sessionStorage).join('\\n')") == TOKEN
    assert "stations online" in firefox.js("document.getElementById('overview-tiles').innerText")
    firefox.shot(backend.shots, "firefox-overview")

    firefox.js(f"location.hash = '#/sessions/{session['id']}'")
    for chart in ("session-power-chart", "session-energy-chart"):
        firefox.wait(f"document.getElementById('{chart}').dataset.drawn === 'true'", chart)
        painted = firefox.js(f"""(() => {{
            const canvas = document.querySelector('#{chart} canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                                canvas.height).data;
            let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return n; }})()""")
        assert painted > 500, (chart, painted)
    firefox.shot(backend.shots, "firefox-session")

    firefox.call("browsingContext.setViewport", {"context": firefox.context,
                                                 "viewport": {"width": 390, "height": 844}})
    firefox.js("location.hash = '#/stations'")
    firefox.wait("document.querySelector('#stations-list table')", "the stations")
    assert firefox.js("document.documentElement.scrollWidth"
                      " - document.documentElement.clientWidth") <= 0
    firefox.shot(backend.shots, "firefox-phone-stations")
    firefox.js("document.getElementById('sign-out').click()")
    firefox.wait("!document.getElementById('sign-in').hidden", "the sign-in form again")
    assert firefox.js("sessionStorage.length") == 0
    assert firefox.errors() == []
