"""The operator console driven as a person would: sign in, watch a charger come online,
provision a station and read its secret once, command a charger, chart a finished
session, manage id tags, export sessions -- and an account key confined to its account.

One server, one browser and a few simulated chargers for the module (tests/console/
conftest.py); each test provisions what it needs through the API, so they do not depend
on each other's order.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from ..test_cli import TOKEN
from .conftest import Console, wait_session_done

SECRET = re.compile(r"[A-Za-z0-9]{16,40}")


def test_sign_in_keeps_the_token_in_the_tab_only(page: Console,
                                                 finished_session: dict[str, Any]) -> None:
    page.open()
    page.driver.execute_script("sessionStorage.clear()")
    page.open()
    page.visible("#token").send_keys("not-a-valid-token")
    page.css("#sign-in-form button").click()
    error = page.wait_for(lambda: page.css("#sign-in-error").is_displayed()
                          and page.text_of("#sign-in-error"), "the refusal")
    assert "not accepted" in error and "{" not in error
    assert page.storage() == {}
    page.shot("01-sign-in-refused")

    page.sign_in(TOKEN)
    tiles = page.visible("#overview-tiles")
    page.wait_for(lambda: "Updated" in page.text_of("#updated"), "the overview's update time")
    assert "stations online" in tiles.text and "energy today" in tiles.text
    assert list(page.storage().values()) == [TOKEN]  # sessionStorage, and nowhere else
    assert page.driver.execute_script("return localStorage.length") == 0
    assert page.driver.get_cookies() == []
    assert TOKEN not in page.driver.current_url
    assert page.text_of("#who-name") == "Admin"
    page.shot("02-overview")


def test_provisioned_secret_is_shown_once_then_the_station_goes_online(
        page: Console, tmp_path: Path) -> None:
    page.sign_in(TOKEN)
    page.open("#/provision")
    form = page.visible("#account-form")
    form.find_element("name", "name").send_keys("Riverside Charging")
    form.find_element("name", "document").send_keys("DE-123")
    form.find_element("css selector", "button").click()
    page.visible("#account-created")

    form = page.visible("#location-form")
    from selenium.webdriver.support.ui import Select

    Select(form.find_element("name", "accountId")).select_by_visible_text("Riverside Charging")
    form.find_element("name", "name").send_keys("Riverside car park")
    form.find_element("name", "address").send_keys("2 River Street")
    form.find_element("name", "latitude").send_keys("52.1")
    form.find_element("name", "longitude").send_keys("13.2")
    form.find_element("css selector", "button").click()
    page.visible("#location-created")

    form = page.css("#station-form")
    Select(form.find_element("name", "accountId")).select_by_visible_text("Riverside Charging")
    Select(form.find_element("name", "locationId")).select_by_visible_text("Riverside car park")
    form.find_element("name", "stationCode").send_keys("RIVER-01")
    form.find_element("name", "manufacturer").send_keys("ACME")
    form.find_element("css selector", "button[type=submit]").click()
    panel = page.visible("#secret-panel")
    secret = page.css("#secret-value").get_attribute("value")
    assert SECRET.fullmatch(secret), secret
    assert page.css("#secret-code").get_attribute("value") == "RIVER-01"
    assert page.css("#secret-url").get_attribute("value").endswith("/ocpp/1.6/RIVER-01")
    assert "shown only this once" in panel.text and "cannot be shown again" in panel.text
    assert len(panel.find_elements("xpath", ".//button[text()='Copy']")) == 3
    page.shot("03-provisioned-secret")

    # never again: not after a reload, not on the station's page, not in storage
    page.driver.refresh()
    page.visible("#station-form")
    assert not page.all("#secret-panel") and secret not in page.driver.page_source
    assert secret not in str(page.storage())
    station_id = page.admin.get("/api/stations", params={"stationCode": "RIVER-01"}
                                ).json()["items"][0]["id"]
    page.open(f"#/stations/{station_id}")
    page.wait_for(lambda: page.css("#station-status").get_attribute("data-status") == "offline",
                  "the new station shown offline")
    assert secret not in page.driver.page_source

    # the charger connects with the secret it was given: the page shows it online
    page.simulate("RIVER-01", secret, tmp_path, "--scenario", "boot", "--duration", "600",
                  "--connectors", "2")
    page.wait_for(lambda: page.css("#station-status").get_attribute("data-status") == "online",
                  "the station to go online in the page")
    page.wait_for(lambda: "accepted" in page.text_of("#station-head"), "the registration")
    page.shot("04-station-online")
    page.open("#/overview")
    page.wait_for(lambda: int(page.css("#tile-online .value").text) >= 1,
                  "the overview to count it online")


def test_commands_show_the_chargers_answer_or_offline(page: Console,
                                                      charger: dict[str, Any]) -> None:
    from selenium.webdriver.support.ui import Select

    page.sign_in(TOKEN)
    page.open(f"#/stations/{charger['id']}")
    page.wait_for(lambda: page.css("#station-status").get_attribute("data-status") == "online",
                  "the live station")
    Select(page.css("#command-action")).select_by_value("TriggerMessage")
    Select(page.css("#command-form select[name=requestedMessage]")).select_by_value("Heartbeat")
    page.css("#command-send").click()
    result = page.wait_for(lambda: page.css("#command-result"), "the charger's answer")
    assert result.get_attribute("data-outcome") == "answered"
    assert "The charger answered" in result.text and "Accepted" in result.text
    page.wait_for(lambda: "TriggerMessage" in page.text_of("#command-history"),
                  "the command in the history")

    # start charging remotely: the page shows the session, which an operator can close
    Select(page.css("#command-action")).select_by_value("RemoteStartTransaction")
    page.css("#command-form input[name=idTag]").send_keys("SIMTAG")
    page.css("#command-form input[name=connectorId]").send_keys("2")
    page.css("#command-send").click()
    page.wait_for(lambda: "Accepted" in page.text_of("#command-result"), "RemoteStart accepted")
    link = page.wait_for(lambda: page.css("#station-active a"), "the active session")
    assert "SIMTAG" in page.text_of("#station-active")
    link.click()
    page.wait_for(lambda: "so far" in page.text_of("#session-energy"), "the live session page")
    page.css("#close-session").click()
    alert = page.wait_for(lambda: page.driver.switch_to.alert, "the reason prompt")
    alert.send_keys("test: charger replaced")
    alert.accept()
    page.wait_for(lambda: "for review: closed by admin: test: charger replaced"
                  in page.text_of("#session-facts"), "the session closed")
    assert not page.all("#close-session")
    page.open(f"#/stations/{charger['id']}")
    page.visible("#command-form")

    Select(page.css("#command-action")).select_by_value("GetConfiguration")
    page.css("#command-form input[name=key]").send_keys("HeartbeatInterval, NoSuchKey")
    page.css("#command-send").click()
    page.wait_for(lambda: "keys" in page.text_of("#command-result"), "the configuration")
    text = page.text_of("#command-result")
    assert "HeartbeatInterval" in text and "Unknown keys: NoSuchKey" in text
    assert "{" not in text  # words and tables, never raw JSON
    page.css("#station-configuration").find_element("xpath", "..").find_element(
        "tag name", "summary").click()
    page.wait_for(lambda: "HeartbeatInterval" in page.text_of("#station-configuration"),
                  "the stored configuration")
    assert "GetConfiguration" in page.text_of("#station-configuration")
    page.shot("05-command-answered")

    # a station that never connected: "offline", plainly, and nothing sent
    offline = page.provision("CON-NEVER")
    page.open(f"#/stations/{offline['id']}")
    page.visible("#command-form")
    Select(page.css("#command-action")).select_by_value("ClearCache")
    page.css("#command-send").click()
    result = page.wait_for(lambda: page.css("#command-result"), "the offline outcome")
    assert result.get_attribute("data-outcome") == "offline"
    assert "Offline" in result.text and "not connected" in result.text
    page.shot("06-command-offline")


def test_a_finished_session_is_charted(page: Console, finished_session: dict[str, Any]) -> None:
    session = wait_session_done(page, finished_session)
    assert session["energyWh"] > 0
    page.sign_in(TOKEN)
    page.open("#/sessions")
    table = page.visible("#sessions-list table")
    row = next(tr for tr in table.find_elements("css selector", "tbody tr")
               if "CON-SESSION" in tr.text)
    assert f"{session['energyWh'] / 1000:.2f}".rstrip("0").rstrip(".") in row.text.replace(
        ",", "")
    row.click()
    page.wait_for(lambda: "/sessions/" in page.driver.current_url, "the session page")
    for chart in ("#session-power-chart", "#session-energy-chart"):
        page.wait_for(lambda c=chart: page.css(c).get_attribute("data-drawn") == "true",
                      f"{chart} drawn")
        assert int(page.css(chart).get_attribute("data-points")) >= 5
        # the canvas really holds a drawn line: non-transparent pixels
        painted = page.driver.execute_script("""
            const canvas = document.querySelector(arguments[0] + ' canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                                canvas.height).data;
            let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return n;""", chart)
        assert painted > 500, painted
    assert "kWh" in page.text_of("#session-energy")
    page.shot("07-session-chart")

    # the station page charts the same readings, with the uptime bar
    page.open(f"#/stations/{finished_session['id']}")
    page.wait_for(lambda: page.css("#power-chart").get_attribute("data-drawn") == "true",
                  "the station's power chart")
    assert page.all("#uptime .timeline .seg.online")
    assert "Online" in page.text_of("#uptime")
    # a chosen period around the session: finer buckets, more points
    from selenium.webdriver.support.ui import Select

    Select(page.css("#period")).select_by_value("custom")
    page.visible("#custom-period")
    page.driver.execute_script("""
        const local = (iso, minutes) => { const d = new Date(new Date(iso).getTime()
            + minutes * 60000); return new Date(d.getTime() - d.getTimezoneOffset() * 60000)
            .toISOString().slice(0, 16); };
        const form = document.getElementById('custom-period');
        form.elements.from.value = local(arguments[0], -1);
        form.elements.to.value = local(arguments[1], 2);""", session["startedAt"],
                               session["stoppedAt"])
    page.css("#custom-period button").click()
    page.wait_for(lambda: int(page.css("#power-chart").get_attribute("data-points")) >= 5,
                  "the chosen period's finer chart")
    assert int(page.css("#energy-chart").get_attribute("data-points")) >= 5
    assert "Online" in page.text_of("#uptime")
    page.shot("08-station-history")
    page.driver.execute_script(
        "const f = document.getElementById('custom-period');"
        " [f.elements.from.value, f.elements.to.value] = [f.elements.to.value,"
        " f.elements.from.value];")
    page.css("#custom-period button").click()
    page.wait_for(lambda: "Choose a start and a later end" in page.text_of("#history-error"),
                  "the refused period")


def test_sessions_filter_and_csv_export(page: Console, finished_session: dict[str, Any]) -> None:
    from selenium.webdriver.support.ui import Select

    session = wait_session_done(page, finished_session)
    page.sign_in(TOKEN)
    page.open("#/sessions")
    form = page.visible("#session-filters")
    Select(form.find_element("name", "stationId")).select_by_visible_text("CON-SESSION")
    Select(form.find_element("name", "active")).select_by_value("false")
    form.find_element("css selector", "button[type=submit]").click()
    page.wait_for(lambda: page.text_of("#sessions-list").split("\n")[0] == "1 session",
                  "the filtered list")
    downloads: Path = page.driver.downloads
    page.css("#export-csv").click()
    page.visible("#csv-done")
    exported = page.wait_for(lambda: [p for p in downloads.glob("sessions-*.csv")],
                             "the CSV download")
    rows = list(csv.DictReader(io.StringIO(exported[0].read_text())))
    assert [(r["station"], r["energyWh"], r["sessionId"]) for r in rows] == [
        ("CON-SESSION", str(session["energyWh"]), session["id"])]
    # a cell a spreadsheet would run as a formula (an id tag may be "=1+1") stays text
    cells = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('./lib.js').then((m) => done(
            ['=1+1', '@SUM(A1)', '-2', '+cmd', 'a"b'].map(m.csvCell)));""")
    assert cells == ['"\'=1+1"', '"\'@SUM(A1)"', '"-2"', '"\'+cmd"', '"a""b"']
    page.shot("09-sessions")


def test_id_tags_are_created_blocked_and_unblocked(page: Console, charger: dict[str, Any]
                                                   ) -> None:
    from selenium.webdriver.support.ui import Select

    page.post("/api/id-tags", {"accountId": charger["account"]["id"], "idTag": "OLD-CARD",
                               "expiresAt": "2020-01-01T00:00:00Z"})
    page.sign_in(TOKEN)
    page.open("#/id-tags")
    form = page.visible("#id-tag-form")
    row = page.wait_for(lambda: next(tr for tr in page.all("#id-tags-list tbody tr")
                                     if "OLD-CARD" in tr.text), "the expired tag")
    assert "expired" in row.text
    Select(form.find_element("name", "accountId")).select_by_visible_text("Acct CON-LIVE")
    form.find_element("name", "idTag").send_keys("CARD-0042")
    form.find_element("name", "label").send_keys("Fleet van 7")
    form.find_element("css selector", "button").click()
    page.wait_for(lambda: "CARD-0042 added" in page.text_of("#id-tag-message"), "the new tag")

    def tag() -> dict[str, Any]:
        r = page.admin.get("/api/id-tags", params={"accountId": charger["account"]["id"]})
        return next(t for t in r.json()["items"] if t["idTag"] == "CARD-0042")

    assert tag()["status"] == "active" and tag()["label"] == "Fleet van 7"
    page.css("button[data-tag='CARD-0042']").click()
    page.wait_for(lambda: tag()["status"] == "blocked", "the tag blocked")
    page.wait_for(lambda: page.css("button[data-tag='CARD-0042']").text == "Unblock",
                  "the Unblock button")
    page.shot("10-id-tags")
    page.css("button[data-tag='CARD-0042']").click()
    page.wait_for(lambda: tag()["status"] == "active", "the tag unblocked")
    # a duplicate is refused in plain words
    form = page.css("#id-tag-form")
    Select(form.find_element("name", "accountId")).select_by_visible_text("Acct CON-LIVE")
    form.find_element("name", "idTag").send_keys("card-0042")
    form.find_element("css selector", "button").click()
    page.wait_for(lambda: "already has this id tag" in page.text_of("#id-tag-message"),
                  "the duplicate refused")


def test_an_account_key_sees_only_its_account(page: Console, charger: dict[str, Any]) -> None:
    mine = page.provision("CON-KEY-1")
    key = page.post(f"/api/accounts/{mine['account']['id']}/api-keys", {"name": "ops"})["apiKey"]
    page.sign_in(key)
    assert page.text_of("#who-name") == f"Account: {mine['account']['name']}"
    page.open("#/stations")
    page.wait_for(lambda: "CON-KEY-1" in page.text_of("#stations-list"), "its station")
    listed = page.text_of("#stations-list")
    assert "CON-LIVE" not in listed and "1 of 1 station" in listed
    page.shot("11-account-key-stations")

    # another account's station, asked for by its address: refused in words
    page.open(f"#/stations/{charger['id']}")
    error = page.wait_for(lambda: page.css("#view .error").text, "the refusal")
    assert "another account" in error and "CON-LIVE" not in page.text_of("#view")
    page.shot("12-account-key-refused")
    page.open("#/provision")  # its own locations and stations; no accounts, no keys
    page.visible("#station-form")
    assert not page.all("#account-form") and not page.all("#key-form")
    assert not page.css("#station-form select[name=accountId]").is_displayed()
    assert page.text_of("#nav a[data-page=provision]") == "Provision stations"
    page.open("#/overview")
    page.wait_for(lambda: page.text_of("#tile-offline .value") == "1", "its own overview")
    assert page.text_of("#tile-online .value") == "0"  # CON-LIVE is another account's
    attention = page.wait_for(lambda: "CON-KEY-1" in page.text_of("#overview-attention")
                              and page.text_of("#overview-attention"), "the station to look at")
    assert "never connected" in attention and "CON-SESSION" not in attention


def test_sign_out_forgets_the_token(page: Console) -> None:
    page.sign_in(TOKEN)
    page.open("#/stations")
    page.visible("#stations-list")
    page.css("#sign-out").click()
    page.visible("#sign-in")
    assert page.storage() == {}
    assert not page.css("#view").is_displayed() and page.text_of("#view") == ""
    page.open("#/stations")  # a bookmarked page asks for the token again
    page.visible("#sign-in")
    assert not page.all("#stations-list")
    page.shot("13-signed-out")


def test_phone_width(page: Console, charger: dict[str, Any]) -> None:
    page.sign_in(TOKEN)
    try:
        page.driver.set_window_size(390, 844)
        for name, fragment, ready in (("overview", "#/overview", "#overview-tiles"),
                                      ("station", f"#/stations/{charger['id']}", "#power-chart"),
                                      ("sessions", "#/sessions", "#sessions-list")):
            page.open(fragment)
            page.visible(ready)
            time.sleep(0.3)
            # nothing sticks out sideways: wide tables scroll inside their card
            wide = page.driver.execute_script("""
                const edge = document.documentElement.clientWidth;
                return [...document.querySelectorAll('body *')].filter((el) => {
                    const box = el.getBoundingClientRect();
                    return box.width && box.right > edge + 0.5
                        && !el.closest('.table-wrap');
                }).map((el) => el.tagName + '.' + el.className + ' ' + el.id).slice(0, 8);""")
            assert wide == [], (name, wide)
            page.shot(f"14-phone-{name}")
    finally:
        page.driver.set_window_size(1280, 900)


def test_api_errors_read_as_words(page: Console) -> None:
    page.sign_in(TOKEN)
    page.open("#/stations/00000000-0000-4000-8000-000000000000")
    error = page.wait_for(lambda: page.css("#view .error").text, "the error")
    assert error.startswith("Not found") and "{" not in error and "not_found" not in error
    r = httpx.get(f"{page.base}/api/stations/00000000-0000-4000-8000-000000000000",
                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.json()["error"]["message"] not in error  # not the raw API text either


def test_rotating_the_secret_and_deactivating(page: Console) -> None:
    station = page.provision("CON-ROTATE")
    page.sign_in(TOKEN)
    page.open(f"#/stations/{station['id']}")
    page.visible("#rotate-secret").click()
    page.wait_for(lambda: page.driver.switch_to.alert, "the confirmation").accept()
    page.visible("#secret-panel")
    secret = page.css("#secret-value").get_attribute("value")
    assert SECRET.fullmatch(secret) and secret != station["secret"]
    assert "no longer works" in page.text_of("#secret-panel")
    page.shot("15-secret-rotated")
    page.css("#deactivate").click()
    page.wait_for(lambda: page.driver.switch_to.alert, "the confirmation").accept()
    page.visible("#activate")
    assert page.station(station["id"])["isActive"] is False
    assert "deactivated" in page.text_of("#station-head")
    page.open("#/stations")
    from selenium.webdriver.support.ui import Select

    Select(page.visible("#station-filter")).select_by_value("inactive")
    page.wait_for(lambda: "CON-ROTATE" in page.text_of("#stations-list"), "the filter")
    assert "CON-LIVE" not in page.text_of("#stations-list")
    page.css("#station-search").send_keys("no-such-station")
    page.wait_for(lambda: "No station matches" in page.text_of("#stations-list"), "the search")


def test_a_faulted_charger_that_does_not_answer(page: Console) -> None:
    """A charger (a bare WebSocket here) that reports a station fault, then never answers
    a command: the fault on the page (badge, status bar, faults table, overview), then
    "No answer" after the server's --command-timeout (5 s here)."""
    import base64 as b64
    import threading

    from selenium.webdriver.support.ui import Select
    from websockets.sync.client import connect

    station = page.provision("CON-MUTE")
    auth = b64.b64encode(f"CON-MUTE:{station['secret']}".encode()).decode()
    with connect(f"{page.ocpp_url}/CON-MUTE", subprotocols=["ocpp1.6"],
                 additional_headers={"Authorization": f"Basic {auth}"}) as ws:
        heard: list[str] = []
        reader = threading.Thread(target=lambda: [heard.append(str(m)) for m in ws],
                                  daemon=True)
        reader.start()
        page.wait_for(lambda: page.station(station["id"])["runtime"]["status"] == "online",
                      "the mute charger online")
        ws.send(json.dumps([2, "boot-1", "BootNotification", {
            "chargePointVendor": "Bare", "chargePointModel": "Socket"}]))
        page.wait_for(lambda: any(json.loads(m)[:2] == [3, "boot-1"] for m in heard),
                      "the boot accepted")
        ws.send(json.dumps([2, "fault-1", "StatusNotification", {
            "connectorId": 0, "errorCode": "GroundFailure", "status": "Faulted",
            "info": "RCD tripped",
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")}]))
        page.wait_for(lambda: any(json.loads(m)[:2] == [3, "fault-1"] for m in heard),
                      "the fault stored")
        page.sign_in(TOKEN)
        page.wait_for(lambda: int(page.css("#tile-faulted .value").text) >= 1,
                      "the overview counting it faulted")
        # the admin narrows the overview to one account
        from selenium.webdriver.support.ui import Select as Choose

        Choose(page.css("#overview-account")).select_by_visible_text("Acct CON-MUTE")
        page.wait_for(lambda: page.text_of("#overview-attention").count("CON-") == 1
                      and "CON-MUTE" in page.text_of("#overview-attention"), "one account")
        assert [page.text_of(f"#tile-{t} .value") for t in ("faulted", "online", "offline")
                ] == ["1", "0", "0"]
        page.open(f"#/stations/{station['id']}")
        page.wait_for(lambda: "GroundFailure" in page.text_of("#faults"), "the faults table")
        assert "RCD tripped" in page.text_of("#faults")
        assert page.css("#station-status").get_attribute("data-status") == "faulted"
        assert page.all("#uptime .timeline .seg.faulted")
        Select(page.visible("#command-action")).select_by_value("ClearCache")
        page.css("#command-send").click()
        page.visible("#command-waiting")
        assert page.css("#command-send").get_attribute("disabled") is not None
        result = page.wait_for(lambda: page.css("#command-result"), "no answer", seconds=20)
        assert result.get_attribute("data-outcome") == "no-answer"
        assert "No answer from the charger" in result.text
        assert any('"ClearCache"' in m for m in heard)  # it was sent, just not answered
        page.wait_for(lambda: "timeout" in page.text_of("#command-history"), "the history")
        page.shot("16-command-no-answer")


def test_text_from_the_api_stays_text(page: Console) -> None:
    """Markup in stored fields (a manufacturer, a location, a label) is shown as it is,
    never run: every value reaches the page through textContent."""
    hostile = '<img src=x onerror="window.pwned=1">'
    account = page.post("/api/accounts", {"name": "<b>Bold</b> Ltd", "document": "X1"})
    location = page.post("/api/locations", {
        "accountId": account["id"], "name": "<script>window.pwned=2</script>",
        "address": hostile, "latitude": 1, "longitude": 2})
    made = page.post("/api/stations", {
        "accountId": account["id"], "locationId": location["id"], "stationCode": "CON-XSS",
        "connectors": 1, "manufacturer": hostile[:64], "model": "<i>M</i>"})
    page.post("/api/id-tags", {"accountId": account["id"], "idTag": "<svg/onload=x>",
                               "label": hostile})
    page.sign_in(TOKEN)
    for fragment, ready in ((f"#/stations/{made['station']['id']}", "#station-head"),
                            ("#/stations", "#stations-list table"),
                            ("#/id-tags", "#id-tags-list table"),
                            ("#/provision", "#station-form")):
        page.open(fragment)
        page.visible(ready)
        page.wait_for(lambda: "<" in page.text_of("#view"), f"the text on {fragment}")
        text = page.text_of("#view")
        assert page.driver.execute_script("return window.pwned") is None, fragment
        assert not page.all("#view img, #view script, #view svg, #view b, #view i"), fragment
        assert any(s in text for s in (hostile[:40], "<script>window.pwned=2</script>",
                                       "<svg/onload=x>", "<b>Bold</b> Ltd")), fragment
    page.open(f"#/stations/{made['station']['id']}")
    page.wait_for(lambda: "<script>window.pwned=2</script>" in page.text_of("#station-head"),
                  "the location name as text")
    page.shot("17-markup-as-text")
