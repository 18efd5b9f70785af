"""Prometheus exposition of this process (`GET /metrics`, admin token).

Owns: the metric names, their help texts and labels, and reading them at scrape
time from the counters the components already keep (session registry, listener
admission, group-commit writer, command bus, database pool, verifier). Nothing
here is on the hot path: components bump plain integers; a scrape turns them
into metric families. Each process exposes its own figures (a multi-process
deployment is scraped per process). Also owns `Distribution`, the histogram the
components fill.
"""

from __future__ import annotations

import bisect
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# A server.Server; not imported, so the data layer (which uses Distribution) does
# not depend on the whole process for its strict type check.
Server = Any

BATCH_SIZES: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
LATENCY_SECONDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                          5.0, 10.0, 30.0, 60.0)


class Distribution:
    """Observations counted into fixed buckets (upper bounds), with their sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


# Weak, by id: a Server is a dataclass (not hashable), and a test process may run many.
_SERVERS: Final[weakref.WeakValueDictionary[int, Any]] = weakref.WeakValueDictionary()


def register(server: Server) -> None:
    """Expose this server's figures (normally the only one in the process)."""
    _SERVERS[id(server)] = server


def unregister(server: Server) -> None:
    _SERVERS.pop(id(server), None)


class _Collector:
    def collect(self) -> Iterator[Metric]:
        servers = list(_SERVERS.values())

        def counter(name: str, text: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, labels=list(labels))

        connected = GaugeMetricFamily("autimit_ocpp_stations_connected",
                                      "stations with an open OCPP connection to this process")
        connected.add_metric([], sum(len(s.sessions.sessions()) for s in servers))
        yield connected

        metrics = [s.sessions.metrics for s in servers]
        yield _by_label("autimit_ocpp_handshakes", "OCPP handshakes by result (accepted, or "
                        "the refusal kind)", ["result"],
                        [Counter({"accepted": sum(m.connections_opened for m in metrics)}),
                         *(s.ocpp.limits.refusals.totals for s in servers)])

        replaced = counter("autimit_ocpp_connections_replaced",
                           "connections closed because the same station connected again")
        replaced.add_metric([], sum(m.connections_replaced for m in metrics))
        yield replaced

        yield _by_label("autimit_ocpp_messages", "CALLs received from chargers, by action and "
                        "outcome (result: CALLRESULT sent, error: CALLERROR sent)",
                        ["action", "outcome"], [m.calls_by_outcome for m in metrics])
        yield _by_label("autimit_ocpp_call_errors_sent", "CALLERRORs sent to chargers, by code "
                        "(bad frames included)", ["code"], [m.call_errors_sent for m in metrics])

        frames = counter("autimit_ocpp_frames_received", "WebSocket messages received")
        frames.add_metric([], sum(s.sessions.metrics.frames_in for s in servers))
        yield frames
        paced = counter("autimit_ocpp_frames_paced", "frames read late because their "
                        "connection was over --max-calls-per-second")
        paced.add_metric([], sum(s.sessions.metrics.frames_paced for s in servers))
        yield paced

        bcrypt = counter("autimit_auth_bcrypt_checks", "bcrypt verifications of station secrets")
        bcrypt.add_metric([], sum(s.verifier.bcrypt_checks for s in servers))
        yield bcrypt

        yield from _writer(servers)
        yield from _commands(servers)
        yield from _pool(servers)


def _by_label(name: str, text: str, labels: list[str],
              parts: Sequence[Counter[Any]]) -> CounterMetricFamily:
    """A counter family from per-server Counters keyed by a label value (or a tuple of
    them), summed; a key counted 0 still gets its sample."""
    total: Counter[Any] = Counter()
    for part in parts:
        total.update(part)
    family = CounterMetricFamily(name, text, labels=labels)
    for key, n in sorted(total.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
    return family


def _histogram(name: str, text: str, parts: list[Distribution],
               labels: tuple[str, ...] = (), values: tuple[str, ...] = ()
               ) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=list(labels))
    if parts:
        merged = Distribution(parts[0].bounds)
        for part in parts:
            merged.counts = [a + b for a, b in zip(merged.counts, part.counts, strict=True)]
            merged.total += part.total
        family.add_metric(list(values), merged.cumulative(), merged.total)
    return family


def _writer(servers: list[Server]) -> Iterator[Metric]:
    stats = [s.writer.stats for s in servers if hasattr(s, "writer")]
    yield _histogram("autimit_db_write_batch_size", "write rules committed per group-commit "
                     "transaction", [st.batch_sizes for st in stats])
    yield _histogram("autimit_db_write_commit_seconds", "time to commit one group-commit "
                     "batch", [st.commit_latency for st in stats])
    failed = CounterMetricFamily("autimit_db_write_failed_items", "write rules that failed "
                                 "(their charger got a CALLERROR)")
    failed.add_metric([], sum(st.failed_items for st in stats))
    yield failed
    depth = GaugeMetricFamily("autimit_db_writer_queue_depth",
                              "write rules waiting for the next batch")
    depth.add_metric([], sum(s.writer.queue_depth() for s in servers if hasattr(s, "writer")))
    yield depth


def _commands(servers: list[Server]) -> Iterator[Metric]:
    buses = [s.commands for s in servers if hasattr(s, "commands")]
    yield _by_label("autimit_commands", "commands delivered to chargers by this process, by "
                    "action and outcome", ["action", "status"],
                    [bus.stats.outcomes for bus in buses])
    yield _histogram("autimit_command_seconds", "from delivery of a command to the charger's "
                     "answer (or its timeout)", [bus.stats.latency for bus in buses])


def _pool(servers: list[Server]) -> Iterator[Metric]:
    size = GaugeMetricFamily("autimit_db_pool_connections", "database pool connections by "
                             "state", labels=["state"])
    waiting = GaugeMetricFamily("autimit_db_pool_requests_waiting",
                                "requests waiting for a pooled connection")
    totals = {"open": 0, "idle": 0, "max": 0}
    queued = 0
    for s in servers:
        stats = s.db.pool_stats()
        totals["open"] += stats.get("pool_size", 0)
        totals["idle"] += stats.get("pool_available", 0)
        totals["max"] += stats.get("pool_max", 0)
        queued += stats.get("requests_waiting", 0)
    for state, n in totals.items():
        size.add_metric([state], n)
    waiting.add_metric([], queued)
    yield size
    yield waiting


REGISTRY: Final = CollectorRegistry(auto_describe=False)
REGISTRY.register(_Collector())


def render() -> tuple[bytes, str]:
    """The exposition text of this process, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
