"""Prometheus metrics: one registry per app, every metric name of the gateway declared here.

Dashboards and alert rules (grafana/, observability/) query only the names in this module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from gateway.telemetry.fastmetrics import CounterChild, FastCounter, FastHistogram, HistogramChild

# Sub-millisecond to tens of seconds: the gateway answers cached reads in well under 1 ms
# and proxies slow upstream calls (eth_getLogs) that take seconds.
LATENCY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Every metric the gateway exports, registered on the app's own registry (a second
    app in the same process, as in tests, gets its own)."""

    def __init__(self, registry: CollectorRegistry) -> None:  # noqa: PLR0915  # a statement a family
        self.registry = registry
        r = registry
        # --- HTTP (every request, telemetry middleware): event-loop-only, lock-free series
        self.http_requests = FastCounter(
            "gateway_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            r,
        )
        self.http_duration = FastHistogram(
            "gateway_http_request_duration_seconds",
            "Time from request routed to response ready, by route template.",
            ["method", "route"],
            r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.in_flight = 0  # the middleware counts; the gauge reads it when scraped
        self.http_in_flight = Gauge(
            "gateway_http_requests_in_flight", "HTTP requests being handled now.", registry=r
        )
        self.http_in_flight.set_function(lambda: self.in_flight)
        self.build_info = Info(
            "gateway_build", "Version and commit of the running gateway.", registry=r
        )
        # --- upstream nodes
        self.upstream_up = Gauge(
            "gateway_upstream_up",
            "1 when the upstream node answered its last check.",
            ["network", "upstream"],
            registry=r,
        )
        self.upstream_head_block = Gauge(
            "gateway_upstream_head_block",
            "Block number of the node's latest/safe/finalized.",
            ["network", "upstream", "tag"],
            registry=r,
        )
        self.upstream_lag_blocks = Gauge(
            "gateway_upstream_lag_blocks",
            "Blocks the node's head is behind the best head.",
            ["network", "upstream"],
            registry=r,
        )
        self.upstream_breaker_state = Gauge(
            "gateway_upstream_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["network", "upstream"],
            registry=r,
        )
        # --- JSON-RPC
        self.rpc_requests = FastCounter(
            "gateway_rpc_requests",
            "JSON-RPC calls, by method (known ones), tier and outcome.",
            ["network", "method", "tier", "outcome"],
            r,
        )
        self.rpc_coalesced = FastCounter(
            "gateway_rpc_coalesced",
            "Calls answered by an identical call already in flight (no node call of their own).",
            ["network", "method"],
            r,
        )
        self.rpc_upstream_requests = FastCounter(
            "gateway_rpc_upstream_requests",
            "Calls sent to upstream nodes, by outcome.",
            ["network", "upstream", "method", "outcome"],
            r,
        )
        self.rpc_upstream_duration = FastHistogram(
            "gateway_rpc_upstream_duration_seconds",
            "Upstream call latency.",
            ["network", "upstream"],
            r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.rpc_failovers = Counter(
            "gateway_rpc_failovers",
            "Calls moved to another node after this one failed.",
            ["network", "upstream"],
            registry=r,
        )
        self.rpc_hedges = Counter(
            "gateway_rpc_hedges",
            "Slow reads also sent to this node (hedging).",
            ["network", "upstream"],
            registry=r,
        )
        self.rpc_empty_retries = Counter(
            "gateway_rpc_empty_retries",
            "Lookups a node behind the others answered null, asked again of a node further "
            "on, by method and outcome (found, none).",
            ["network", "method", "outcome"],
            registry=r,
        )
        self.rpc_broadcast = Counter(
            "gateway_rpc_broadcast",
            "eth_sendRawTransaction sent to a node (every node gets each one), by what the "
            "node said: accepted, known (it had it: already known, nonce too low with the "
            "same hash), rejected, unreachable.",
            ["network", "upstream", "outcome"],
            registry=r,
        )
        self.rpc_consensus = Counter(
            "gateway_rpc_consensus",
            "Calls answered by consensus (rpc.consensus), by method and outcome: agreed, "
            "dispute_error, dispute_highest, dispute_common, low_participants.",
            ["network", "method", "outcome"],
            registry=r,
        )
        self.upstream_misbehavior = Counter(
            "gateway_upstream_misbehavior",
            "Answers of a node outside the agreement of a consensus call (the node is then "
            "sidelined for rpc.consensus.punish_s).",
            ["network", "upstream", "method"],
            registry=r,
        )
        self.rpc_cache_requests = FastCounter(
            "gateway_rpc_cache_requests",
            "Cacheable calls, by hit or miss.",
            ["network", "result"],
            r,
        )
        self.rpc_cache_bytes = Gauge(
            "gateway_rpc_cache_bytes",
            "Bytes held by the response cache.",
            ["network"],
            registry=r,
        )
        self.ws_connections = Gauge(
            "gateway_ws_connections", "Open JSON-RPC WebSocket connections.", registry=r
        )
        self.ws_subscriptions = Gauge(
            "gateway_ws_subscriptions",
            "Client subscriptions, by type.",
            ["network", "type"],
            registry=r,
        )
        # --- identity
        self.auth_attempts = Counter(
            "gateway_auth_attempts",
            "Sign-in verifications, by outcome (ok or why not).",
            ["outcome"],
            registry=r,
        )
        self.auth_verify_duration = Histogram(
            "gateway_auth_verify_duration_seconds",
            "Time to verify a sign-in (parse, signature, contract wallet, nonce).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        # --- signed records and anchoring
        self.records_submitted = FastCounter(
            "gateway_records_submitted", "Records submitted, by outcome.", ["outcome"], r
        )
        self.records_verify_duration = FastHistogram(
            "gateway_records_verify_duration_seconds",
            "Time to verify a record.",
            [],
            r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.records_pending_anchor = Gauge(
            "gateway_records_pending_anchor",
            "Records not yet in an anchor batch.",
            ["network"],
            registry=r,
        )
        self.anchor_batches = Counter(
            "gateway_anchor_batches",
            "Anchor batches, by outcome.",
            ["network", "outcome"],
            registry=r,
        )
        self.anchor_batch_size = Histogram(
            "gateway_anchor_batch_size",
            "Records per anchored batch.",
            ["network"],
            buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
            registry=r,
        )
        self.anchor_last_success = Gauge(
            "gateway_anchor_last_success_timestamp_seconds",
            "Unix time of the last confirmed anchor batch.",
            ["network"],
            registry=r,
        )
        self.anchor_gas_used = Counter(
            "gateway_anchor_gas_used", "Gas used by anchor transactions.", ["network"], registry=r
        )
        self.anchor_key_balance = Gauge(
            "gateway_anchor_key_balance_eth",
            "Balance of the anchoring key, in ether.",
            ["network"],
            registry=r,
        )
        # --- gasless requests (relay)
        self.relay_requests = Counter(
            "gateway_relay_requests",
            "Relay requests by outcome: accepted, each refusal's reason, and how accepted "
            "ones ended (confirmed, failed, expired, canceled).",
            ["network", "outcome"],
            registry=r,
        )
        self.relay_pending = Gauge(
            "gateway_relay_pending",
            "Relay requests accepted and not final yet (queued, sent or mined).",
            ["network"],
            registry=r,
        )
        self.relay_oldest_unfinished = Gauge(
            "gateway_relay_oldest_unfinished_seconds",
            "Age of the oldest relay request not mined yet (0 when none).",
            ["network"],
            registry=r,
        )
        self.relay_at_fee_ceiling = Gauge(
            "gateway_relay_at_fee_ceiling",
            "Relay transactions waiting at relay.max_fee_gwei, unable to bump further.",
            ["network"],
            registry=r,
        )
        self.relay_tx_sent = Counter(
            "gateway_relay_tx_sent",
            "Relayer transactions broadcast, by kind (new, bump: a fee replacement, noop: a "
            "zero-value replacement freeing a nonce).",
            ["network", "kind"],
            registry=r,
        )
        self.relay_confirm_seconds = Histogram(
            "gateway_relay_confirm_seconds",
            "From a relay request's acceptance to its confirmation.",
            ["network"],
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.relayer_balance = Gauge(
            "gateway_relayer_balance_wei",
            "Balance of the relayer key, in wei (it pays for every relayed request).",
            ["network"],
            registry=r,
        )
        # --- storage: SQL and Redis
        self.storage_operations = Counter(
            "gateway_storage_operations",
            "Storage operations, by backend, operation and outcome.",
            ["backend", "op", "outcome"],
            registry=r,
        )
        self.storage_duration = Histogram(
            "gateway_storage_duration_seconds",
            "Storage operation latency.",
            ["backend", "op"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.storage_wal_pages = Gauge(
            "gateway_storage_wal_pages",
            "SQLite: WAL pages not yet copied into the database file, after the last checkpoint.",
            registry=r,
        )
        self.storage_checkpoints = Counter(
            "gateway_storage_checkpoints",
            "SQLite WAL checkpoints, by outcome (ok, partial: readers held some pages; failed).",
            ["outcome"],
            registry=r,
        )
        # --- the process
        self.event_loop_lag = Histogram(
            "gateway_event_loop_lag_seconds",
            "How much later than asked the event loop ran a 0.1 s timer (time it was busy).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        # --- limits
        self.rate_limited = Counter(
            "gateway_rate_limited",
            "Requests refused by a rate limit, by caller tier.",
            ["tier"],
            registry=r,
        )
        self.rate_limiter_failures = Counter(
            "gateway_rate_limiter_failures",
            "Rate-limit checks Redis could not answer, by "
            "what happened (open: let through, closed: refused).",
            ["fail"],
            registry=r,
        )
        self.background_failures = Counter(
            "gateway_background_failures",
            "Failed rounds of a background loop (anchoring, relay, webhooks), by loop and "
            "reason (unavailable: a dependency is down; error: a bug).",
            ["loop", "reason"],
            registry=r,
        )
        # labels() takes a lock and builds a tuple on every call; the hot path reuses children.
        self._http_children: dict[tuple[str, str, int], tuple[CounterChild, HistogramChild]] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def of_network(self, network: str) -> Metrics:
        """These metrics as one network's code sees them: the same registry and series,
        with ``network`` (its chain id) filled in as the first label of each per-network
        family (``PER_NETWORK``)."""
        view = copy.copy(self)
        for name in PER_NETWORK:
            setattr(view, name, _NetworkFamily(getattr(self, name), network))
        return view

    def child(self, metric: Any, *labels: str) -> Any:  # noqa: ANN401  # a labelled child
        """``metric.labels(*labels)``, remembered: hot paths call this per request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_http(
        self,
        method: str,
        route: str,
        status: int,
        elapsed_s: float,
        exemplar: dict[str, str] | None,
    ) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(elapsed_s, exemplar)

    @classmethod
    def create(cls, *, version: str, commit: str) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        metrics = cls(registry)
        metrics.build_info.info({"version": version, "commit": commit})
        return metrics


# Families labelled by network first (``Metrics.of_network``).
PER_NETWORK = (
    "upstream_up",
    "upstream_head_block",
    "upstream_lag_blocks",
    "upstream_breaker_state",
    "rpc_requests",
    "rpc_coalesced",
    "rpc_upstream_requests",
    "rpc_upstream_duration",
    "rpc_failovers",
    "rpc_hedges",
    "rpc_empty_retries",
    "rpc_broadcast",
    "rpc_consensus",
    "upstream_misbehavior",
    "rpc_cache_requests",
    "rpc_cache_bytes",
    "ws_subscriptions",
    "records_pending_anchor",
    "anchor_batches",
    "anchor_batch_size",
    "anchor_last_success",
    "anchor_gas_used",
    "anchor_key_balance",
    "relay_requests",
    "relay_pending",
    "relay_oldest_unfinished",
    "relay_at_fee_ceiling",
    "relay_tx_sent",
    "relay_confirm_seconds",
    "relayer_balance",
)


class _NetworkFamily:
    """A per-network family with the network's label value given: ``labels(*rest)``; a
    family of no other label is used directly (``set``, ``inc``, ``dec``)."""

    __slots__ = ("family", "network")

    def __init__(self, family: Any, network: str) -> None:  # noqa: ANN401  # any family
        self.family = family
        self.network = network

    def labels(self, *values: str) -> Any:  # noqa: ANN401  # the family's child
        return self.family.labels(self.network, *values)

    def set(self, value: float) -> None:
        self.family.labels(self.network).set(value)

    def inc(self, amount: float = 1) -> None:
        self.family.labels(self.network).inc(amount)

    def dec(self, amount: float = 1) -> None:
        self.family.labels(self.network).dec(amount)

    def observe(self, value: float) -> None:
        self.family.labels(self.network).observe(value)


def failures_counter(metrics: Metrics, loop: str) -> Callable[[str], None]:
    """``count(reason)`` for a background loop's failed rounds."""
    return lambda reason: metrics.child(metrics.background_failures, loop, reason).inc()
