"""`autimit-csms dev` prints the console's URL next to the admin token, and both work:
what a person copies from the terminal into a browser."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from autimit_csms.localpg import free_port

from ..test_cli import CLI


def test_dev_prints_the_console_url_and_the_token_that_opens_it() -> None:
    # As root the private cluster runs as another user: a folder it can enter.
    base = Path(tempfile.mkdtemp(prefix="autimit-dev-test-"))
    base.chmod(0o755)
    api_port, ocpp_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*CLI, "dev", "--data-dir", str(base / "data"), "--api-listen",
         f"127.0.0.1:{api_port}", "--ocpp-listen", f"127.0.0.1:{ocpp_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "AUTIMIT_ADMIN_TOKEN": ""})
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()],
                              daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("Ctrl-C stops" in line for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(seen)
        console = re.search(r"console\s+(http://\S+/console/)", text)
        token = re.search(r"admin token\s+(\S+)", text)
        assert console and token, text
        assert console[1] == f"http://127.0.0.1:{api_port}/console/"
        assert text.index("console ") < text.index("admin token") < text.index("REST API")
        while True:  # printed just before it starts listening
            try:
                r = httpx.get(console[1], timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 200 and "Sign in" in r.text
        assert "content-security-policy" in r.headers
        me = httpx.get(f"http://127.0.0.1:{api_port}/api/me", timeout=10,
                       headers={"Authorization": f"Bearer {token[1]}"})
        assert me.json()["role"] == "admin"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)
