"""The console's own scripts (not the vendored library): data reaches the page only as
text, nothing is kept beyond the tab's sessionStorage, nothing is logged, and nothing
is loaded from elsewhere. A browser is not needed for these."""

from __future__ import annotations

import re

from autimit_csms.api.console import ROOT

FORBIDDEN = {
    "innerHTML": "markup parsed from strings",
    "outerHTML": "markup parsed from strings",
    "insertAdjacentHTML": "markup parsed from strings",
    "document.write": "markup parsed from strings",
    "eval(": "code from strings",
    "new Function": "code from strings",
    "setTimeout(\"": "code from strings",
    "localStorage": "the token outlives the tab",
    "document.cookie": "the token outlives the tab",
}
LOGGING = re.compile(r"\bconsole\.(log|info|warn|error|debug|trace|dir)\b")


def test_console_scripts_build_the_page_from_text_only() -> None:
    scripts = sorted(ROOT.glob("*.js"))
    assert {p.name for p in scripts} == {"app.js", "lib.js", "charts.js"}
    for path in scripts:
        text = path.read_text()
        for needle, why in FORBIDDEN.items():
            assert needle not in text, f"{path.name} uses {needle}: {why}"
        assert not LOGGING.search(text), f"{path.name} logs: a log could carry the token"
        assert not re.search(r"https?://", text), f"{path.name} names another origin"
    index = (ROOT / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", index)
    # the token goes in a header; the query string builder never sees it
    lib = (ROOT / "lib.js").read_text()
    assert "headers.Authorization = `Bearer ${bearer}`" in lib
    assert "sessionStorage.setItem" in lib
