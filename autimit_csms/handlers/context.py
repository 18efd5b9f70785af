"""The connection facts and services a handler may use."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from ..db import Database
from ..db.writer import GroupCommitWriter


class InvalidCall(Exception):
    """A CALL the schema allows but OCPP forbids; answered with this CALLERROR code."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


@dataclass
class StationContext:
    station_id: uuid.UUID
    station_code: str
    account_id: uuid.UUID
    registration: str          # station_runtime_state.registration_status
    heartbeat_interval: int
    writer: GroupCommitWriter  # every charger write goes here
    db: Database               # reads only

    @property
    def accepted(self) -> bool:
        return self.registration == "accepted"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(value: str) -> dt.datetime:
    """An OCPP dateTime (already schema-checked as RFC 3339)."""
    return dt.datetime.fromisoformat(value)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
