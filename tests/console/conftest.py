"""The operator console in real headless browsers: Debian's chromium driven by selenium
through chromium-driver (and firefox-esr over WebDriver BiDi, test_firefox.py), against
one real `autimit-csms serve` (the console script, on a fresh database of the test
PostgreSQL) and simulated chargers (`autimit-csms simulate`), shared by the package.

Without the browsers the tests skip with the reason; .ci/run installs them as root and
sets AUTIMIT_REQUIRE_BROWSER=1, which turns their absence into a failure.
Screenshots of each page go to $AUTIMIT_ARTIFACTS/console (default
test-artifacts/console under the repository); the path is printed at the end.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from autimit_csms.localpg import LocalPostgres

from ..conftest import ROOT
from ..test_cli import CLI, TOKEN, serve

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")
WAIT = 15.0  # seconds a page may take to show what a test waits for
TAKEN: list[Path] = []  # screenshots of this run
CLEARED: list[Path] = []  # the artifacts folder, once emptied


def artifacts_dir() -> Path:
    base = os.environ.get("AUTIMIT_ARTIFACTS")
    return (Path(base) if base else ROOT / "test-artifacts") / "console"


def _missing(reason: str) -> None:
    """Skip with the reason; a failure where AUTIMIT_REQUIRE_BROWSER=1 (.ci/run as root)."""
    if os.environ.get("AUTIMIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AUTIMIT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def find(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@dataclass
class Console:
    """The running server, its admin API client and the browser on the console."""

    base: str
    ocpp_url: str
    admin: httpx.Client
    driver: Any
    shots: Path
    simulators: list[subprocess.Popen[str]] = field(default_factory=list)

    # ------------------------------------------------ the browser
    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.base}/console/{fragment}")

    def wait_for(self, check: Callable[[], Any], what: str, seconds: float = WAIT) -> Any:
        """The first truthy result of `check` (exceptions count as not yet)."""
        deadline = time.monotonic() + seconds
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except Exception as err:  # noqa: BLE001 - a page still loading
                last = err
            time.sleep(0.1)
        if self.driver is not None:
            self.shot(f"failed-{what.replace(' ', '-')[:40]}")
        raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def visible(self, selector: str) -> Any:
        return self.wait_for(lambda: (el := self.css(selector)).is_displayed() and el,
                             f"{selector} to show")

    def text_of(self, selector: str) -> str:
        return str(self.css(selector).text)

    def shot(self, name: str) -> Path:
        """A screenshot of the whole page (not only the window) as an artifact."""
        path = self.shots / f"{name}.png"
        width, height = self.driver.execute_script(
            "const e = document.documentElement;"
            " return [window.innerWidth, Math.max(e.scrollHeight, document.body.scrollHeight)];")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        TAKEN.append(path)
        return path

    def storage(self) -> dict[str, str]:
        return dict(self.driver.execute_script(
            "const out = {}; for (let i = 0; i < sessionStorage.length; i++) {"
            " const k = sessionStorage.key(i); out[k] = sessionStorage.getItem(k); }"
            " return out;"))

    def sign_in(self, token: str) -> None:
        self.open()
        self.driver.execute_script("sessionStorage.clear()")
        self.open()
        field_ = self.visible("#token")
        field_.send_keys(token)
        self.css("#sign-in-form button").click()
        self.visible("#nav")

    # ------------------------------------------------ the API and chargers
    def provision(self, code: str, account: dict[str, Any] | None = None,
                  connectors: int = 2) -> dict[str, Any]:
        """A station (in a new account unless given): the account, location, station id
        and its one-time secret."""
        if account is None:
            account = self.post("/api/accounts", {"name": f"Acct {code}", "document": code})
        location = self.post("/api/locations", {
            "accountId": account["id"], "name": f"Site of {code}", "address": "1 Test Road",
            "latitude": 52.5, "longitude": 13.4})
        made = self.post("/api/stations", {
            "accountId": account["id"], "locationId": location["id"], "stationCode": code,
            "connectors": connectors, "manufacturer": "ACME", "model": "Sim"})
        return {"account": account, "location": location, "id": made["station"]["id"],
                "code": code, "secret": made["provisioning"]["stationSecret"]}

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.admin.post(path, json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def simulate(self, code: str, secret: str, tmp: Path, *args: str) -> subprocess.Popen[str]:
        """`autimit-csms simulate` for one station, in the background."""
        stations = tmp / f"{code}.csv"
        stations.write_text(f"{code},{secret}\n")
        stations.chmod(0o600)
        proc = subprocess.Popen(
            [*CLI, "simulate", "--stations-file", str(stations), "--ocpp-url", self.ocpp_url,
             "--api-url", self.base, "--admin-token", TOKEN, "--progress-every", "0",
             "--seed", "7", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.simulators.append(proc)
        return proc

    def station(self, station_id: str) -> dict[str, Any]:
        r = self.admin.get(f"/api/stations/{station_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def shots_dir() -> Path:
    """The artifacts folder, emptied of earlier runs' pictures once per test run."""
    shots = artifacts_dir()
    shots.mkdir(parents=True, exist_ok=True)
    if not CLEARED:
        for old in shots.glob("*.png"):
            old.unlink()
        CLEARED.append(shots)
    return shots


@pytest.fixture(scope="package")
def backend(pg: LocalPostgres) -> Iterator[Console]:
    """`autimit-csms serve` on a fresh database, its admin client, no browser yet; one for
    all the console tests (Chromium's and Firefox's). Simulated chargers started by the
    tests are stopped (gracefully) at the end."""
    with serve(pg, "serve", env={"AUTIMIT_COMMAND_TIMEOUT": "5",
                                 "AUTIMIT_HEARTBEAT_INTERVAL": "30"}) as (base, ocpp_port, _):
        with httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
            running = Console(base, f"ws://127.0.0.1:{ocpp_port}/ocpp/1.6", admin, None,
                              shots_dir())
            try:
                yield running
            finally:
                for proc in running.simulators:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGINT)
                for proc in running.simulators:
                    try:
                        proc.communicate(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.communicate()


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """Chromium and its driver, or a skip (a failure with AUTIMIT_REQUIRE_BROWSER=1)."""
    browser, driver_path = find(BROWSERS), find(DRIVERS)
    if browser is None or driver_path is None:
        _missing("no chromium/chromedriver on PATH (Debian: apt-get install chromium "
                 "chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (requirements.lock)")
    assert browser and driver_path
    return browser, driver_path


@pytest.fixture(scope="module")
def console(chromium: tuple[str, str], backend: Console,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The server with headless Chromium (selenium + chromium-driver) on its console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                "--lang=en-GB"):
        options.add_argument(arg)
    downloads = tmp_path_factory.mktemp("downloads")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromium[1]))
    driver.downloads = downloads  # type: ignore[attr-defined]
    backend.driver = driver
    try:
        yield backend
    finally:
        backend.driver = None
        driver.quit()


@pytest.fixture(scope="package")
def charger(backend: Console, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A station with a simulated charger connected for the whole module."""
    station = backend.provision("CON-LIVE")
    backend.simulate(station["code"], station["secret"], tmp_path_factory.mktemp("sim"),
                     "--scenario", "boot", "--duration", "600", "--connectors", "2")
    backend.wait_for(lambda: backend.station(station["id"])["runtime"]["status"] == "online",
                     "the live charger to connect")
    return station


@pytest.fixture(scope="package")
def finished_session(backend: Console, tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, Any]:
    """A station whose simulated charger runs one charging session (10 charger-minutes at
    60x: about 10 s of real time, a reading every 30 charger-seconds); started when first
    asked for, waited for by `wait_session_done`."""
    station = backend.provision("CON-SESSION", connectors=1)
    backend.simulate(station["code"], station["secret"], tmp_path_factory.mktemp("sim"),
                     "--scenario", "session", "--charge-duration", "600",
                     "--meter-interval", "30", "--speed", "60", "--pause", "0",
                     "--connectors", "1")
    return station


def wait_session_done(backend: Console, station: dict[str, Any]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        r = backend.admin.get("/api/sessions", params={"stationId": station["id"]})
        items = r.json()["items"]
        return items[0] if items and items[0]["status"] == "completed" else None

    return backend.wait_for(done, "the simulated session to finish", seconds=40)  # type: ignore[no-any-return]


@pytest.fixture
def page(console: Console) -> Iterator[Console]:
    """The console, checked after the test: no script error and no Content-Security-Policy
    violation in the browser's log (failed API answers a test provokes are not errors)."""
    console.driver.get_log("browser")  # drop what earlier tests left
    yield console
    problems = [entry["message"] for entry in console.driver.get_log("browser")
                if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]
    assert not problems, problems


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TAKEN:
        terminalreporter.write_line(f"console screenshots ({len(TAKEN)}): {TAKEN[0].parent}")
