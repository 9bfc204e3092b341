"""Generates the Grafana dashboards in grafana/dashboards/ (run: python grafana/build.py).

Dashboards are code, built with Grafana's Foundation SDK (typed builders of Grafana's own
dashboard model); the layout (24 columns, a panel that does not fit starting a new line, a
row header always starting one) is this module's. Every panel's PromQL lives here, a test
regenerates the JSON and compares, and the real-Prometheus test evaluates every query
against a running gateway.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as gf
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog import builder as cog
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    GridPos,
    VariableOption,
    VariableRefresh,
)

OUT = Path(__file__).resolve().parent / "dashboards"
PROM = DataSourceRef(type_val="prometheus", uid="prometheus")
SEL = 'instance=~"$instance"'
# Series of one network (chain id) carry a `network` label; the dashboards' network
# variable picks among them.
NET = f'{SEL},network=~"$network"'
_KINDS = {"timeseries": timeseries.Panel, "stat": stat.Panel, "table": table.Panel}


def panel(
    title: str,
    exprs: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    exemplars: bool = False,
    width: int = 12,
    height: int = 8,
) -> cog.Builder:
    """A panel of Prometheus queries (expression, legend); placed by ``dashboard``."""
    built = _KINDS[kind]().title(title).description(description).datasource(PROM).unit(unit)
    built = built.span(width).height(height)
    if kind == "timeseries":
        built = built.legend(
            VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
        )
    for index, (expr, legend) in enumerate(exprs):
        built = built.with_target(
            prometheus.Dataquery()
            .ref_id(chr(65 + index))
            .expr(expr)
            .legend_format(legend)
            .datasource(PROM)
            .exemplar(exemplars)
        )
    return built


def row(title: str, description: str = "") -> cog.Builder:
    """A full-width row header; the panels after it, up to the next row, are its own."""
    del description  # rows have no description in Grafana's model; the first panel says it
    return gf.Row(title).collapsed(False)


def variable(name: str, query: str, label: str) -> cog.Builder:
    return (
        gf.QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query(query)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .current(VariableOption(text="All", value="$__all"))
    )


def dashboard(
    uid: str, title: str, description: str, panels: list[cog.Builder], variables: list[cog.Builder]
) -> dict:
    """The dashboard's JSON model: panels laid out left to right in rows of 24 columns, a
    panel that does not fit on the current line starting the next, a row header always
    starting one."""
    board = (
        gf.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["gateway"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(
            variable("instance", "label_values(gateway_build_info, instance)", "Instance")
        )
        .with_variable(variable("network", "label_values(gateway_upstream_up, network)", "Network"))
    )
    for each in variables:
        board = board.with_variable(each)
    x = y = line_height = 0
    for index, item in enumerate(panels, start=1):
        is_row = isinstance(item, gf.Row)
        built = item.build()
        width = 24 if is_row else built.grid_pos.w
        height = 1 if is_row else built.grid_pos.h
        if x + width > 24 or (is_row and x > 0):
            x, y, line_height = 0, y + line_height, 0
        position = GridPos(x=x, y=y, w=width, h=height)
        item = item.grid_pos(position).id(index)
        board = board.with_row(item) if is_row else board.with_panel(item)
        x += width
        line_height = max(line_height, height)
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))


ROUTE = 'route=~"$route"'


def ratio(part: str, whole: str, by: str) -> str:
    """rate(part) / rate(whole), 0 (not "no data") while ``part`` has no series yet."""
    group = f" by ({by})" if by else ""
    numerator = f"sum{group} (rate({part}[$__rate_interval]))"
    denominator = f"sum{group} (rate({whole}[$__rate_interval]))"
    return f"({numerator} or 0 * {denominator}) / clamp_min({denominator}, 1e-9)"


UPSTREAM = 'upstream=~"$upstream"'


def overview() -> dict:
    return dashboard(
        "gateway-overview",
        "Gateway overview",
        "Is the gateway serving? Traffic, errors, latency (with exemplars linking to traces), saturation.",
        [
            panel(
                "Request rate by route",
                [
                    (
                        f"sum by (route) (rate(gateway_http_requests_total{{{SEL},{ROUTE}}}[$__rate_interval]))",
                        "{{route}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Error ratio",
                [
                    (
                        ratio(
                            f'gateway_http_requests_total{{{SEL},status=~"5.."}}',
                            f"gateway_http_requests_total{{{SEL}}}",
                            "",
                        ),
                        "5xx ratio",
                    ),
                    (
                        ratio(
                            f'gateway_http_requests_total{{{SEL},status=~"4.."}}',
                            f"gateway_http_requests_total{{{SEL}}}",
                            "",
                        ),
                        "4xx ratio",
                    ),
                ],
                unit="percentunit",
            ),
            panel(
                "Latency p50 / p95 / p99 by route",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, route) (rate(gateway_http_request_duration_seconds_bucket{{{SEL},{ROUTE}}}[$__rate_interval])))",
                        f"p{int(q * 100)} {{{{route}}}}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                unit="s",
                exemplars=True,
                width=24,
                description="Click an exemplar (a dot) to open its trace in Tempo.",
            ),
            panel("In flight", [(f"sum(gateway_http_requests_in_flight{{{SEL}}})", "in flight")]),
            panel(
                "Status codes",
                [
                    (
                        f"sum by (status) (rate(gateway_http_requests_total{{{SEL}}}[$__rate_interval]))",
                        "{{status}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "CPU",
                [(f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}}")],
                unit="percentunit",
                description="One process uses one core at most: 1.0 is its ceiling.",
                width=6,
            ),
            panel(
                "Event-loop lag p99",
                [
                    (
                        (
                            "histogram_quantile(0.99, sum by (le, instance) (rate("
                            f"gateway_event_loop_lag_seconds_bucket{{{SEL}}}[$__rate_interval])))"
                        ),
                        "{{instance}}",
                    )
                ],
                unit="s",
                description="How late the event loop ran a 0.1 s timer: every request of the "
                "process waited about this long behind other work.",
                width=6,
            ),
            panel(
                "Resident memory",
                [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
                unit="bytes",
                width=6,
            ),
            panel(
                "Open file descriptors", [(f"process_open_fds{{{SEL}}}", "{{instance}}")], width=6
            ),
            panel(
                "Build",
                [(f"gateway_build_info{{{SEL}}}", "{{version}} {{commit}}")],
                kind="table",
                width=24,
                height=5,
            ),
        ],
        [variable("route", "label_values(gateway_http_requests_total, route)", "Route")],
    )


def upstreams() -> dict:
    return dashboard(
        "gateway-upstreams",
        "Ethereum upstreams",
        "The JSON-RPC gateway: which nodes serve, how far behind they are, failovers, cache, limits, WebSocket.",
        [
            panel("Up", [(f"gateway_upstream_up{{{NET},{UPSTREAM}}}", "{{upstream}}")], width=8),
            panel(
                "Head block (latest)",
                [(f'gateway_upstream_head_block{{{NET},{UPSTREAM},tag="latest"}}', "{{upstream}}")],
                width=8,
            ),
            panel(
                "Lag behind the best head",
                [(f"gateway_upstream_lag_blocks{{{NET},{UPSTREAM}}}", "{{upstream}}")],
                width=8,
            ),
            panel(
                "Upstream latency p50 / p99",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, upstream) (rate(gateway_rpc_upstream_duration_seconds_bucket{{{NET},{UPSTREAM}}}[$__rate_interval])))",
                        f"p{int(q * 100)} {{{{upstream}}}}",
                    )
                    for q in (0.5, 0.99)
                ],
                unit="s",
            ),
            panel(
                "Upstream error rate",
                [
                    (
                        ratio(
                            f'gateway_rpc_upstream_requests_total{{{NET},{UPSTREAM},outcome="error"}}',
                            f"gateway_rpc_upstream_requests_total{{{NET},{UPSTREAM}}}",
                            "upstream",
                        ),
                        "{{upstream}}",
                    )
                ],
                unit="percentunit",
            ),
            panel(
                "Failovers",
                [
                    (
                        f"sum by (upstream) (increase(gateway_rpc_failovers_total{{{NET},{UPSTREAM}}}[$__range]))",
                        "from {{upstream}}",
                    )
                ],
                kind="stat",
                width=8,
            ),
            panel(
                "Circuit breaker (0 closed, 1 half-open, 2 open)",
                [(f"gateway_upstream_breaker_state{{{NET},{UPSTREAM}}}", "{{upstream}}")],
                width=8,
            ),
            panel(
                "Cache hit ratio",
                [
                    (
                        ratio(
                            f'gateway_rpc_cache_requests_total{{{NET},result="hit"}}',
                            f"gateway_rpc_cache_requests_total{{{NET}}}",
                            "",
                        ),
                        "hit ratio",
                    )
                ],
                unit="percentunit",
                width=8,
            ),
            panel(
                "JSON-RPC calls by method and outcome",
                [
                    (
                        f"sum by (method, outcome) (rate(gateway_rpc_requests_total{{{NET}}}[$__rate_interval]))",
                        "{{method}} {{outcome}}",
                    )
                ],
                unit="reqps",
                width=24,
            ),
            panel(
                "Rate-limited requests by tier",
                [
                    (
                        f"sum by (tier) (rate(gateway_rate_limited_total{{{SEL}}}[$__rate_interval]))",
                        "{{tier}}",
                    )
                ],
                unit="reqps",
                width=8,
            ),
            panel(
                "WebSocket connections",
                [(f"sum(gateway_ws_connections{{{SEL}}})", "connections")],
                width=8,
            ),
            panel(
                "WebSocket subscriptions",
                [(f"sum by (type) (gateway_ws_subscriptions{{{NET}}})", "{{type}}")],
                width=8,
            ),
            row(
                "Answers checked across nodes",
                "Consensus (rpc.consensus), null lookups asked again of a node further on, "
                "and transactions sent to every node.",
            ),
            panel(
                "Consensus calls by outcome",
                [
                    (
                        f"sum by (method, outcome) (increase(gateway_rpc_consensus_total{{{NET}}}[$__range]))",
                        "{{method}} {{outcome}}",
                    )
                ],
                description="agreed: enough nodes gave the same answer; dispute_*: they did "
                "not (error, or the answer on_dispute chose); low_participants: too few nodes.",
                width=6,
            ),
            panel(
                "Nodes outside the agreement",
                [
                    (
                        f"sum by (upstream, method) (increase(gateway_upstream_misbehavior_total{{{NET},{UPSTREAM}}}[$__range]))",
                        "{{upstream}} {{method}}",
                    )
                ],
                description="Each one sidelined for rpc.consensus.punish_s.",
                width=6,
            ),
            panel(
                "Null lookups asked again",
                [
                    (
                        f"sum by (method, outcome) (increase(gateway_rpc_empty_retries_total{{{NET}}}[$__range]))",
                        "{{method}} {{outcome}}",
                    )
                ],
                description="A node behind the others answered null; found: a node further "
                "on had it.",
                width=6,
            ),
            panel(
                "Transactions broadcast, by node and outcome",
                [
                    (
                        f"sum by (upstream, outcome) (increase(gateway_rpc_broadcast_total{{{NET},{UPSTREAM}}}[$__range]))",
                        "{{upstream}} {{outcome}}",
                    )
                ],
                description="accepted, known (the node had it), rejected, unreachable.",
                width=6,
            ),
        ],
        [variable("upstream", "label_values(gateway_upstream_up, upstream)", "Upstream")],
    )


def identity_and_records() -> dict:
    return dashboard(
        "gateway-identity-records",
        "Identity and records",
        "Sign-ins, signed records and their anchoring on chain.",
        [
            panel(
                "Sign-in attempts by outcome",
                [
                    (
                        f"sum by (outcome) (rate(gateway_auth_attempts_total{{{SEL}}}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Sign-in verification p50 / p99",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) (rate(gateway_auth_verify_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
                unit="s",
            ),
            panel(
                "Records submitted by outcome",
                [
                    (
                        f"sum by (outcome) (rate(gateway_records_submitted_total{{{SEL}}}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Record verification p99",
                [
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(gateway_records_verify_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                        "p99",
                    )
                ],
                unit="s",
            ),
            panel(
                "SQLite WAL pages left after a checkpoint",
                [(f"max by (instance) (gateway_storage_wal_pages{{{SEL}}})", "{{instance}}")],
                description="Normally 0: the checkpointer copies the WAL twice a second. Growth "
                "means a reader holds an old snapshot (see the SqliteWalNotCheckpointed runbook).",
            ),
            panel(
                "SQLite checkpoints by outcome",
                [
                    (
                        f"sum by (outcome) (rate(gateway_storage_checkpoints_total{{{SEL}}}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Records waiting for an anchor",
                [(f"sum(gateway_records_pending_anchor{{{NET}}})", "pending")],
                width=8,
            ),
            panel(
                "Anchor batches",
                [
                    (
                        f"sum by (outcome) (increase(gateway_anchor_batches_total{{{NET}}}[$__range]))",
                        "{{outcome}}",
                    )
                ],
                kind="stat",
                width=8,
            ),
            panel(
                "Time since the last anchor",
                [
                    (
                        f"time() - max(gateway_anchor_last_success_timestamp_seconds{{{NET}}})",
                        "since last anchor",
                    )
                ],
                unit="s",
                kind="stat",
                width=8,
            ),
            panel(
                "Batch size (median)",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(gateway_anchor_batch_size_bucket{{{NET}}}[$__range])))",
                        "median records per batch",
                    )
                ],
                width=8,
            ),
            panel(
                "Gas used by anchoring",
                [(f"sum(increase(gateway_anchor_gas_used_total{{{NET}}}[$__range]))", "gas")],
                kind="stat",
                width=8,
            ),
            panel(
                "Anchor key balance",
                [(f"min(gateway_anchor_key_balance_eth{{{NET}}})", "ETH")],
                kind="stat",
                width=8,
            ),
            # --- gasless requests (relay)
            panel(
                "Relay requests by outcome",
                [
                    (
                        f"sum by (outcome) (rate(gateway_relay_requests_total{{{NET}}}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Relay: acceptance to confirmation p50 / p99",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) (rate(gateway_relay_confirm_seconds_bucket{{{NET}}}[$__range])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
                unit="s",
            ),
            panel(
                "Relay transactions sent by kind",
                [
                    (
                        f"sum by (kind) (increase(gateway_relay_tx_sent_total{{{NET}}}[$__range]))",
                        "{{kind}}",
                    )
                ],
                kind="stat",
                width=8,
            ),
            panel(
                "Relay requests not final / oldest unmined",
                [
                    (f"sum(gateway_relay_pending{{{NET}}})", "not final"),
                    (f"max(gateway_relay_oldest_unfinished_seconds{{{NET}}})", "oldest (s)"),
                    (f"sum(gateway_relay_at_fee_ceiling{{{NET}}})", "at the fee ceiling"),
                ],
                width=8,
            ),
            panel(
                "Relayer balance",
                [(f"min(gateway_relayer_balance_wei{{{NET}}}) / 1e18", "ETH")],
                kind="stat",
                width=8,
            ),
        ],
        [],
    )


DASHBOARDS = {
    "overview.json": overview,
    "upstreams.json": upstreams,
    "identity-records.json": identity_and_records,
}


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
