"""What the OCPP listener admits: failed-handshake budgets, connection caps, refusal counts.

Owns: per-source and per-station-code budgets of failed handshakes (token buckets
on Trio's clock), the count of open connections per process and per source, the
aggregated log of refusals (one line per source per interval, never what the
client sent), and the per-connection pace of incoming frames. Pure bookkeeping:
no sockets, no database. Every table is bounded, whatever an attacker sends.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Final

import trio

from ..settings import Settings

log = logging.getLogger(__name__)

MAX_KEYS: Final = 100_000          # sources or codes remembered; the least recent goes first
# A flood spread over many addresses keeps each inside its own budget: while this
# process sees more failed handshakes a second than FLOOD_RATE (averaged over
# FLOOD_WINDOW seconds), each failure costs its source PRESSURE_COST tokens, so a
# botnet's addresses are blocked at accept within seconds instead of a minute.
FLOOD_RATE: Final = 50.0
FLOOD_WINDOW: Final = 10.0
PRESSURE_COST: Final = 10
MAX_REPORTED_SOURCES: Final = 1000  # per interval; the rest are summed into one line
REPORT_INTERVAL: Final = 60.0       # seconds between refusal summaries


class Standing(Enum):
    OK = "ok"                # within budget: full handshake
    THROTTLED = "throttled"  # budget spent: only a secret verified before gets in (no bcrypt)
    BLOCKED = "blocked"      # still failing while throttled: closed at accept, nothing read


class FailureBudget:
    """`per_minute` failures a minute per key, as a token bucket of that size.

    The level goes on falling while a throttled key keeps failing, down to
    -per_minute: a key that spent a second full budget while throttled is
    BLOCKED until one token has refilled (60 / per_minute seconds), then gets
    throttled answers again. 0 disables.
    """

    def __init__(self, per_minute: int, *, max_keys: int = MAX_KEYS) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60
        self._max_keys = max_keys
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        entry = self._levels.get(key)
        if entry is None:
            return self.capacity
        level, stamp = entry
        return min(self.capacity, level + (now - stamp) * self.rate)

    def standing(self, key: str) -> Standing:
        if not self.capacity:
            return Standing.OK
        level = self._level(key, trio.current_time())
        if level >= 1:
            return Standing.OK
        return Standing.THROTTLED if level >= 1 - self.capacity else Standing.BLOCKED

    def fail(self, key: str, cost: float = 1) -> None:
        if not self.capacity:
            return
        now = trio.current_time()
        self._levels[key] = (max(-self.capacity, self._level(key, now) - cost), now)
        self._levels.move_to_end(key)
        if len(self._levels) > self._max_keys:
            self._levels.popitem(last=False)

    def __len__(self) -> int:
        return len(self._levels)


class RefusalLog:
    """Refused handshakes counted per source and kind, logged as one line per source
    per interval: a flood costs a few lines a minute, not one per attempt."""

    def __init__(self, *, max_sources: int = MAX_REPORTED_SOURCES) -> None:
        self._max_sources = max_sources
        self._counts: dict[str, Counter[str]] = {}
        self._others: Counter[str] = Counter()
        self._other_sources = 0
        self.totals: Counter[str] = Counter()  # since start, for metrics and tests

    def count(self, source: str, kind: str) -> None:
        self.totals[kind] += 1
        counts = self._counts.get(source)
        if counts is None:
            if len(self._counts) >= self._max_sources:
                self._others[kind] += 1
                self._other_sources += 1  # an upper bound: repeats are not told apart
                return
            counts = self._counts[source] = Counter()
        counts[kind] += 1

    def flush(self, interval: float) -> None:
        for source, counts in self._counts.items():
            level = logging.WARNING if counts.keys() & {"throttled", "dropped"} else logging.INFO
            log.log(level, "handshakes refused from %s in the last %.0f s: %s",
                    source, interval, _kinds(counts))
        if self._others:
            log.warning("handshakes refused from up to %d more sources in the last %.0f s: %s",
                        self._other_sources, interval, _kinds(self._others))
        self._counts, self._others, self._other_sources = {}, Counter(), 0

    async def run(self, interval: float = REPORT_INTERVAL) -> None:
        while True:
            await trio.sleep(interval)
            self.flush(interval)


def _kinds(counts: Counter[str]) -> str:
    return " ".join(f"{kind}={n}" for kind, n in sorted(counts.items()))


class FloodMeter:
    """Failed handshakes a second in this process, as an exponentially decaying average."""

    def __init__(self, rate: float = FLOOD_RATE, window: float = FLOOD_WINDOW) -> None:
        self.rate, self.window = rate, window
        self._level, self._stamp = 0.0, trio.current_time()

    def _decayed(self, now: float) -> float:
        return self._level * math.exp(-(now - self._stamp) / self.window)

    def fail(self) -> None:
        now = trio.current_time()
        self._level, self._stamp = self._decayed(now) + 1, now

    def flooded(self) -> bool:
        return self._decayed(trio.current_time()) / self.window > self.rate


class Admission:
    """The listener's limits, built from the settings once per process."""

    def __init__(self, settings: Settings) -> None:
        self.flood = FloodMeter()
        self.sources = FailureBudget(settings.auth_failures_per_source)
        self.stations = FailureBudget(settings.auth_failures_per_station)
        self.refusals = RefusalLog()
        self.max_connections = settings.max_connections
        self.max_per_source = settings.max_connections_per_source
        self.open = 0
        self._open_by_source: Counter[str] = Counter()

    def over_limit(self, source: str) -> bool:
        return bool(self.max_connections and self.open >= self.max_connections
                    or self.max_per_source
                    and self._open_by_source[source] >= self.max_per_source)

    @contextmanager
    def holding(self, source: str) -> Iterator[None]:
        """Count one open connection of `source` for the duration."""
        self.open += 1
        self._open_by_source[source] += 1
        try:
            yield
        finally:
            self.open -= 1
            self._open_by_source[source] -= 1
            if not self._open_by_source[source]:
                del self._open_by_source[source]

    def failed(self, source: str, kind: str, code: str | None = None) -> None:
        """A refused handshake: it costs the source's budget (and the code's)."""
        self.refusals.count(source, kind)
        self.flood.fail()
        self.sources.fail(source, PRESSURE_COST if self.flood.flooded() else 1)
        if code is not None:
            self.stations.fail(code.lower())

    def standing(self, source: str, code: str) -> Standing:
        worst = [self.sources.standing(source), self.stations.standing(code.lower())]
        return Standing.OK if worst == [Standing.OK, Standing.OK] else Standing.THROTTLED


def source_key(address: str) -> str:
    """What a budget is kept for: the IPv4 address, or the /64 of an IPv6 one
    (one subscriber usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Pace:
    """Frames a connection may send: `rate` a second after a burst of `burst`.

    The session waits before reading the next frame when it is ahead, so a
    flooding charger is slowed by TCP backpressure: nothing is lost or refused.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(max(1, burst))
        self._level, self._stamp = self.burst, trio.current_time()

    def take(self) -> float:
        """Take one frame's token; the seconds to wait before reading it."""
        now = trio.current_time()
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate) - 1
        self._stamp = now
        return -self._level / self.rate if self._level < 0 else 0.0
