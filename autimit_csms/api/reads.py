"""Read API for dashboards and apps: availability, sessions, meter values, history."""

from __future__ import annotations

from quart import Blueprint

blueprint = Blueprint("reads", __name__)
