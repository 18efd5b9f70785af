"""Lint and types as part of the suite: ruff (with the ASYNC and bugbear rules) on
everything, mypy --strict on the sans-I/O codec and the data layer (STYLE.md §12)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", "autimit_csms", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_codec_and_data_layer_are_strictly_typed() -> None:
    result = run("mypy", "--strict", "autimit_csms/ocpp16", "autimit_csms/db")
    assert result.returncode == 0, result.stdout + result.stderr
