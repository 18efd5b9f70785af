"""Charger I/O: the OCPP-J listener (handshake, TLS, watchdog) and one session per station."""

from .listener import OcppService
from .session import SessionRegistry, StationSession

__all__ = ["OcppService", "SessionRegistry", "StationSession"]
