"""Typed settings: a TOML file, then GATEWAY_* and OTEL_* environment overrides, validated once."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from gateway.defaults import DEFAULT_ALLOW, DEFAULT_DENY
from gateway.errors import SettingsError

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console", "auto"]
Sampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
Port = Annotated[int, Field(ge=0, le=65535)]
PositiveFloat = Annotated[float, Field(gt=0)]


_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::\d{1,5})?"
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class ServerSettings(_Section):
    # Listen address.
    host: str = "127.0.0.1"
    # Listen port.
    port: Port = 8080
    # Larger request bodies get 413.
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # Grace for in-flight requests on SIGTERM.
    shutdown_timeout_s: PositiveFloat = 15.0
    # Trust X-Forwarded-For for the client ip only behind a known proxy.
    trust_forwarded_for: bool = False
    # Processes sharing the port; with several, each also serves on metrics_port + index.
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    # uvloop (a dependency but on Windows) under "auto", or force one; see gateway/eventloop.py.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    # Cached JSON-RPC reads answered in the connection protocol (gateway/lane/).
    lane: bool = True
    # Every so often, memory the process freed is given back to the OS (glibc's
    # malloc_trim; gateway/heap.py); 0: never.
    heap_trim_interval_s: Annotated[float, Field(ge=0)] = 30.0
    # With workers: each also serves on this port + its index.
    metrics_port: Port = 0
    # Browser origins allowed to call the API from another origin (CORS), e.g.
    # "https://app.example.com"; "*" for any. Empty: same-origin only.
    cors_origins: tuple[str, ...] = ()

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path) or '*'"
                )
        return tuple(origin.lower() for origin in value)


class UpstreamSettings(_Section):
    url: str
    ws_url: str | None = None
    name: str = ""
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    timeout_s: PositiveFloat = 10.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"))

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, ("ws", "wss"))

    @model_validator(mode="after")
    def _default_name(self) -> UpstreamSettings:
        if not self.name:
            parts = urlsplit(self.url)
            object.__setattr__(self, "name", parts.netloc.rsplit("@", 1)[-1])
        return self


class UpstreamPoolSettings(_Section):
    # Per-check timeout of `/readyz`.
    readiness_timeout_s: PositiveFloat = 2.0
    # Connections kept open to each node (JSON-RPC over HTTP).
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = 100


class RpcTierSettings(_Section):
    """Method policy and rate limit of one caller tier."""

    allow: tuple[str, ...] = DEFAULT_ALLOW
    deny: tuple[str, ...] = DEFAULT_DENY
    rate_per_s: PositiveFloat = 50.0
    burst: PositiveFloat = 100.0


class ConsensusRule(_Section):
    """Methods answered only when ``agreement`` of ``participants`` nodes give the same
    answer (compared as canonical JSON). Patterns as in the policy (``eth_get*``)."""

    methods: tuple[str, ...]
    participants: Annotated[int, Field(ge=2, le=10)] = 3
    agreement: Annotated[int, Field(ge=1, le=10)] = 2
    # No answer has `agreement` votes: `error` (-32003 naming the answers),
    # `prefer_highest_block` (the answer of the node with the highest head),
    # `accept_most_common` (the answer most nodes gave; ties to the highest head).
    on_dispute: Literal["error", "prefer_highest_block", "accept_most_common"] = "error"
    # Only calls pinned to a block (a number or a hash; `latest` and the other tags not):
    # nodes a block apart disagree on `latest` without any of them being wrong.
    pinned_only: bool = False

    @model_validator(mode="after")
    def _agreement_fits(self) -> ConsensusRule:
        if self.agreement > self.participants:
            raise ValueError("agreement must be at most participants")
        return self


class ConsensusSettings(_Section):
    """Off unless rules are given; the first rule whose pattern matches a method applies."""

    rules: tuple[ConsensusRule, ...] = ()
    # A node outside an agreement is counted (gateway_upstream_misbehavior_total) and
    # left out of rotation this long.
    punish_s: PositiveFloat = 30.0


class RpcSettings(_Section):
    """The JSON-RPC gateway: batches, failover, heads, cache, eth_getLogs, limits."""

    # Calls per batch.
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    # X-Gateway-Cache, -Upstream, -Attempts, -Block and Server-Timing on every JSON-RPC
    # HTTP reply (rpc/explain.py).
    explain_headers: bool = True
    # Nodes tried per read.
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    consensus: ConsensusSettings = ConsensusSettings()
    health_interval_s: PositiveFloat = 2.0
    # Also follow new blocks as a node announces them (newHeads over its WebSocket URL):
    # `latest` answers in the cache end with their block, not up to health_interval_s later.
    push_heads: bool = True
    health_timeout_s: PositiveFloat = 2.0
    # A node this far behind leaves rotation.
    max_lag_blocks: Annotated[int, Field(ge=0)] = 5
    # A node's head this far past every other node's is not believed (a rogue or runaway
    # node): it moves neither the served tip nor the others' lag, and serves last.
    rogue_head_blocks: Annotated[int, Field(ge=1)] = 128
    breaker_threshold: Annotated[int, Field(ge=1)] = 5
    breaker_cooldown_s: PositiveFloat = 10.0
    # Send a slow read to a second node once the first passes its p95 latency.
    hedge_reads: bool = False
    cache_enabled: bool = True
    # Identical reads in flight at the same time (same method, params and head) make one
    # node call; every caller gets the answer under its own id.
    coalesce: bool = True
    cache_max_bytes: Annotated[int, Field(ge=0)] = 64 * 1024 * 1024
    logs_chunk_blocks: Annotated[int, Field(ge=1)] = 2_000
    logs_max_range: Annotated[int, Field(ge=1)] = 50_000
    logs_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # Request units per call; a batch costs the sum of its calls.
    method_weights: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"eth_getLogs": 5.0, "eth_call": 2.0, "eth_estimateGas": 2.0}
    )
    anonymous: RpcTierSettings = RpcTierSettings()
    signed_in: RpcTierSettings = RpcTierSettings(rate_per_s=200.0, burst=400.0)
    ws_max_subscriptions: Annotated[int, Field(ge=1)] = 50
    # Distinct upstream subscriptions (one WebSocket to a node each) of each network:
    # clients share identical ones, so only distinct filters count.
    ws_max_upstream_subscriptions: Annotated[int, Field(ge=1)] = 1000
    ws_max_connections_per_caller: Annotated[int, Field(ge=1)] = 20
    ws_send_queue: Annotated[int, Field(ge=1)] = 256
    ws_heartbeat_s: PositiveFloat = 30.0
    # newHeads/logs subscriptions without a WebSocket node: how often the tip is polled.
    subscription_poll_s: PositiveFloat = 1.0


class NetworkRpcSettings(_Section):
    """What a network sets for itself; a setting left out is the ``[rpc]`` one."""

    max_lag_blocks: Annotated[int, Field(ge=0)] | None = None
    rogue_head_blocks: Annotated[int, Field(ge=1)] | None = None
    health_interval_s: PositiveFloat | None = None
    health_timeout_s: PositiveFloat | None = None
    push_heads: bool | None = None
    subscription_poll_s: PositiveFloat | None = None
    max_attempts: Annotated[int, Field(ge=1, le=10)] | None = None
    # This network's share of the response cache (default: [rpc] cache_max_bytes split
    # evenly between the networks).
    cache_max_bytes: Annotated[int, Field(ge=0)] | None = None
    logs_chunk_blocks: Annotated[int, Field(ge=1)] | None = None
    logs_max_range: Annotated[int, Field(ge=1)] | None = None
    method_weights: dict[str, PositiveFloat] | None = None
    # A network with a tier of its own limits its callers on it alone; otherwise a
    # caller's budget is one across every network.
    anonymous: RpcTierSettings | None = None
    signed_in: RpcTierSettings | None = None
    consensus: ConsensusSettings | None = None

    def over(self, base: RpcSettings, *, cache_max_bytes: int) -> RpcSettings:
        """``base`` with this network's settings in place of its own."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        given = {name: value for name, value in given.items() if value is not None}
        given.setdefault("cache_max_bytes", cache_max_bytes)
        return base.model_copy(update=given)

    @property
    def own_limits(self) -> bool:
        return self.anonymous is not None or self.signed_in is not None


class NetworkAnchorSettings(_Section):
    """Anchoring on one network: the key is [anchor]'s unless given here."""

    enabled: bool = True
    contract_address: str | None = None
    private_key: SecretStr | None = None


class NetworkRelaySettings(_Section):
    """The relay on one network: the relayer key is [relay]'s unless given here."""

    enabled: bool = True
    forwarder_address: str | None = None
    private_key: SecretStr | None = None


_ALIAS = re.compile(r"[a-z][a-z0-9_\-]{0,31}")


class NetworkSettings(_Section):
    """One chain the gateway serves: its nodes at ``/rpc/<chain id>`` and ``/rpc/<alias>``."""

    # The chain its upstreams must be on (required in [[networks]]).
    chain_id: Annotated[int, Field(ge=1)] | None = None
    # A name for URLs and dashboards: `mainnet`, `base` (lowercase, not only digits).
    alias: str | None = None
    upstreams: tuple[UpstreamSettings, ...] = ()
    rpc: NetworkRpcSettings = NetworkRpcSettings()
    anchor: NetworkAnchorSettings = NetworkAnchorSettings()
    relay: NetworkRelaySettings = NetworkRelaySettings()

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        if value is not None and not _ALIAS.fullmatch(value):
            raise ValueError("an alias is 1-32 of a-z, 0-9, '_' and '-', starting with a letter")
        return value

    @field_validator("upstreams", mode="before")
    @classmethod
    def _upstream_list(cls, value: object) -> object:
        return parse_upstreams(value) if isinstance(value, str) else value

    @property
    def label(self) -> str:
        """Its value of the ``network`` label of metrics: the chain id."""
        return str(self.chain_id) if self.chain_id is not None else "default"

    @property
    def names(self) -> tuple[str, ...]:
        """What ``/rpc/{network}`` accepts for it."""
        named = [str(self.chain_id)] if self.chain_id is not None else []
        return (*named, *([self.alias] if self.alias else []))


class DomainRule(_Section):
    """An accepted EIP-712 domain: every field given must match (absent: any)."""

    name: str | None = None
    version: str | None = None
    chainId: int | None = None  # noqa: N815  # EIP-712's own field names
    verifyingContract: str | None = None  # noqa: N815


class RecordsSettings(_Section):
    """What signed records the gateway accepts, who may read them, and anchoring."""

    # Empty: any domain whose chainId (if it has one) is the gateway's chain.
    domains: tuple[DomainRule, ...] = ()
    # primaryType -> its exact type definitions ({"Mail": [{"name", "type"}, …], …});
    # empty: any well-formed types.
    schemas: dict[str, dict[str, list[dict[str, str]]]] = Field(default_factory=dict)
    max_bytes: Annotated[int, Field(ge=256, le=1024 * 1024)] = 64 * 1024
    # A uint field of one of these names in the message is a deadline (unix seconds).
    deadline_fields: tuple[str, ...] = ("deadline", "expiry", "validUntil")
    # Require a `nonce` field in the message, unused by the same signer before.
    fresh_nonce: bool = False
    # Only the signer may submit (its session address must equal the signer).
    require_session_signer: bool = False
    visibility: Literal["public", "private"] = "public"
    # In private mode: the message field(s) naming who may read (an address or a list).
    recipient_fields: tuple[str, ...] = ("to", "recipient", "recipients")
    max_page: Annotated[int, Field(ge=1, le=1000)] = 100
    # Submissions per caller (the signed-in address, else the client ip), as a token
    # bucket: every record is stored for good and anchored, so one client cannot flood it.
    submit_rate_per_s: PositiveFloat = 20.0
    submit_burst: PositiveFloat = 100.0


class AnchorSettings(_Section):
    """Batches of records anchored as Merkle roots on chain."""

    enabled: bool = True
    interval_s: PositiveFloat = 30.0
    max_batch: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    min_batch: Annotated[int, Field(ge=1)] = 1
    # The anchoring key: a hex private key (secret), or a keystore file + its password.
    private_key: SecretStr | None = None
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    # Where MerkleAnchor is.
    contract_address: str | None = None
    # Written by `gateway contracts deploy` (per chain id)
    deployments_file: Path = Path(".gateway/deployments.json")
    confirmations: Annotated[int, Field(ge=0, le=64)] = 0
    # Wait for a receipt before the next round looks again.
    receipt_timeout_s: PositiveFloat = 120.0


class StorageSettings(_Section):
    # `sqlite:///path` or `postgresql://user:pass@host/db`.
    database_url: SecretStr = SecretStr("sqlite:///./.gateway/gateway.db")
    # auto: migrate the embedded SQLite database at start; PostgreSQL (shared by replicas)
    # only through `gateway db upgrade`, unless set to always.
    migrate_on_start: Literal["auto", "always", "never"] = "auto"
    # PostgreSQL: the longest one storage operation or connection attempt may take (503
    # storage.unavailable past it), so a network partition cannot hold requests for minutes.
    statement_timeout_s: PositiveFloat = 5.0

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(f"scheme {scheme!r} is not one of sqlite, postgresql")
        return value


class RedisSettings(_Section):
    """Shared state for several replicas: nonces, revocations, rate limits (optional)."""

    # Nonces, revocations and rate limits shared by replicas.
    url: SecretStr | None = None
    # When Redis does not answer, rate limits let requests through (true) or refuse them.
    rate_limit_fail_open: bool = True
    timeout_s: PositiveFloat = 1.0

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {
            "redis",
            "rediss",
        }:
            raise ValueError("must be a redis:// or rediss:// URL")
        return value


class LogSettings(_Section):
    # `debug`, `info`, `warning`, `error`.
    level: LogLevel = "info"
    # `json`, `console`, or `auto` (console on a TTY, JSON otherwise)
    format: LogFormat = "auto"
    # One line per request.
    access_log: bool = True

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class TracingSettings(_Section):
    """OpenTelemetry, configured by the standard OTEL_* variables (or [tracing] in the file)."""

    enabled: bool = True
    service_name: str = "gateway"
    # OTLP/HTTP (protobuf) export; none when unset.
    exporter_endpoint: str | None = None
    # `key=value,…` (secret: masked)
    exporter_headers: SecretStr | None = None
    exporter_timeout_s: PositiveFloat = 10.0
    # Any standard sampler name.
    sampler: Sampler = "parentbased_always_on"
    # Ratio for `*traceidratio`.
    sampler_arg: Annotated[float, Field(ge=0, le=1)] = 1.0
    # `k=v,…`.
    resource_attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("exporter_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if not value else _check_url(value, ("http", "https"))


class IdentitySettings(_Section):
    """Sign-In with Ethereum and session tokens."""

    # host[:port] accepted as a message's domain, and as its URI's origin.
    siwe_domains: tuple[str, ...] = ("127.0.0.1:8080", "localhost:8080")
    # Chain ids accepted in messages; empty means the gateway's chain_id (or 1 without one).
    chain_ids: tuple[Annotated[int, Field(ge=1)], ...] = ()
    # Nonce lifetime.
    nonce_ttl_s: Annotated[int, Field(ge=10, le=86_400)] = 300
    # Unused nonces one client ip may hold.
    max_outstanding_nonces: Annotated[int, Field(ge=1, le=10_000)] = 20
    clock_skew_s: Annotated[int, Field(ge=0, le=3600)] = 60
    # Token lifetime (never past the message's `Expiration Time`)
    session_ttl_s: Annotated[int, Field(ge=60, le=30 * 86_400)] = 3600
    issuer: str = "gateway"
    audience: str = "gateway"
    # Ed25519 signing keys (PEM, mode 0600); created on first start if empty.
    keys_dir: Path = Path(".gateway/keys")
    # EdDSA (Ed25519) or ES256 (P-256): the latter for verifiers that skip OKP keys.
    token_algorithm: Literal["EdDSA", "ES256"] = "EdDSA"  # noqa: S105  # a name, not a secret
    # Newest keys that verify tokens and are published.
    jwks_keys: Annotated[int, Field(ge=1, le=10)] = 2
    key_reload_s: PositiveFloat = 10.0
    cookie_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] = "gateway_session"
    # `Secure` on the session cookie (`gateway dev` turns it off for plain http)
    cookie_secure: bool = True
    nonce_rate_per_minute: PositiveFloat = 30
    verify_rate_per_minute: PositiveFloat = 30
    rate_burst: PositiveFloat = 10

    @field_validator("siwe_domains")
    @classmethod
    def _lower_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(domain.lower() for domain in value)


_SIGNATURE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\([A-Za-z0-9_,\[\]()]*\)")


class RelaySettings(_Section):
    """Gasless requests: signed ERC-2771 requests relayed through the trusted forwarder.

    On when a relayer key is set and a forwarder address is known (``forwarder_address``,
    else the deployments file written by ``gateway contracts deploy``).
    """

    enabled: bool = True
    # The relayer key that pays for gas: a hex private key (secret), or a keystore + password.
    private_key: SecretStr | None = None
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    forwarder_address: str | None = None
    # Target -> the functions a request may call on it ("sign(string)"). A target is an
    # address, or a contract name recorded in the deployments file ("Guestbook").
    targets: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    allow_value: bool = False  # requests that send ETH along (paid by the relayer)
    max_gas: Annotated[int, Field(ge=21_000, le=30_000_000)] = 1_000_000
    # A request's deadline must be at least this far ahead when it arrives.
    min_deadline_s: Annotated[float, Field(ge=0)] = 60.0
    # Per signer, shared by replicas through Redis when configured.
    requests_per_hour: PositiveFloat = 100.0
    gas_per_hour: PositiveFloat = 10_000_000.0
    require_session: bool = False  # only a signed-in session of `from` may submit
    # DELETE /relay/{id} by an operator: `X-Operator-Token: <this>` (else only the signer).
    operator_token: SecretStr | None = None
    # Sending: a transaction not mined within bump_after_blocks is replaced with the same
    # nonce and fees raised by bump_percent (at least 10), up to max_fee_gwei.
    bump_after_blocks: Annotated[int, Field(ge=1, le=1000)] = 3
    bump_percent: Annotated[int, Field(ge=10, le=500)] = 12
    max_fee_gwei: PositiveFloat = 500.0
    min_priority_fee_gwei: Annotated[float, Field(ge=0)] = 0.01
    confirmations: Annotated[int, Field(ge=0, le=64)] = 0
    poll_interval_s: PositiveFloat = 0.25
    # Status changes POSTed to these URLs, signed with HMAC-SHA256 of the body.
    webhooks: tuple[str, ...] = ()
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    webhook_backoff_s: PositiveFloat = 0.5

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for target, functions in value.items():
            for function in functions:
                if not _SIGNATURE.fullmatch(function.replace(" ", "")):
                    raise ValueError(
                        f"{target}: {function!r} is not a function signature like 'sign(string)'"
                    )
        return value

    @model_validator(mode="after")
    def _webhook_secret(self) -> RelaySettings:
        if self.webhooks and self.webhook_secret is None:
            raise ValueError("webhooks need a webhook_secret (their bodies are signed with it)")
        return self


class WebAppSettings(_Section):
    """The reference dApp page at /app/ (on under ``gateway dev``)."""

    enabled: bool = False


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    # The chain the upstreams must be on (readiness fails otherwise)
    chain_id: Annotated[int, Field(ge=1)] | None = None
    # Node URLs, comma-separated; `http://a:8545|ws://a:8546` pairs an HTTP URL with its
    # WebSocket URL.
    upstreams: tuple[UpstreamSettings, ...] = ()
    # Several chains behind one gateway: each [[networks]] entry has its chain_id, alias,
    # [[networks.upstreams]] and overrides; in place of the top-level chain_id and upstreams.
    networks: tuple[NetworkSettings, ...] = ()
    # The network of /rpc (a chain id or an alias); default: the first one.
    default_network: str | None = None
    upstream_pool: UpstreamPoolSettings = UpstreamPoolSettings()
    rpc: RpcSettings = RpcSettings()
    storage: StorageSettings = StorageSettings()
    redis: RedisSettings = RedisSettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    identity: IdentitySettings = IdentitySettings()
    records: RecordsSettings = RecordsSettings()
    anchor: AnchorSettings = AnchorSettings()
    relay: RelaySettings = RelaySettings()
    webapp: WebAppSettings = WebAppSettings()

    @model_validator(mode="after")
    def _networks(self) -> Settings:
        if not self.networks:
            if self.default_network is not None:
                raise ValueError("default_network names a network, but no [[networks]] are set")
            return self
        if self.upstreams or self.chain_id is not None:
            raise ValueError(
                "networks: give either [[networks]] or the top-level chain_id and upstreams "
                "(one network), not both"
            )
        seen: set[str] = set()
        for index, network in enumerate(self.networks):
            if network.chain_id is None:
                raise ValueError(f"networks.{index}.chain_id: every network needs its chain id")
            for name in network.names:
                if name in seen:
                    raise ValueError(f"networks.{index}: {name!r} names two networks")
                seen.add(name)
        if self.default_network is not None and self.default_network not in seen:
            raise ValueError(
                f"default_network {self.default_network!r} is none of the networks "
                f"({', '.join(sorted(seen))})"
            )
        return self

    def network_list(self) -> tuple[NetworkSettings, ...]:
        """Every network served, the default first: the [[networks]], or the one of the
        top-level chain_id and upstreams."""
        if not self.networks:
            return (NetworkSettings(chain_id=self.chain_id, upstreams=self.upstreams),)
        default = self.networks[0]
        if self.default_network is not None:
            default = next(n for n in self.networks if self.default_network in n.names)
        return (default, *(network for network in self.networks if network is not default))

    def network_for(self, chain_id: int, *, default: bool) -> NetworkSettings:
        """The settings of the network of ``chain_id`` (the one network of the top-level
        settings whatever its chain; ``default`` says which that is)."""
        listed = self.network_list()
        found = next((n for n in listed if n.chain_id == chain_id), None)
        return found if found is not None else listed[0] if default else NetworkSettings()

    def siwe_chain_ids(self) -> frozenset[int]:
        if self.identity.chain_ids:
            return frozenset(self.identity.chain_ids)
        known = {n.chain_id for n in self.network_list() if n.chain_id is not None}
        return frozenset(known or {1})

    def warnings(self) -> list[str]:
        """Valid settings that are probably a mistake, in words an operator can act on."""
        found = []
        if self.redis.url is not None and not self.identity.keys_dir.is_absolute():
            found.append(
                f"identity.keys_dir is the relative path {self.identity.keys_dir} while Redis "
                "is configured (several replicas): replicas that do not share one key ring "
                "make their own signing keys and refuse each other's session tokens (401 at "
                "random behind a load balancer); mount one key ring at an absolute path"
            )
        tracing = self.tracing
        if (
            tracing.enabled
            and tracing.exporter_endpoint
            and tracing.sampler in {"always_on", "parentbased_always_on"}
        ):
            found.append(
                f"tracing.sampler is {tracing.sampler} with an exporter: every request is "
                "traced and exported; in production sample a share of them: "
                "OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1"
            )
        return found

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, with every secret masked."""
        data = self.model_dump(mode="json")
        data["storage"]["database_url"] = mask_url(self.storage.database_url.get_secret_value())
        if self.redis.url is not None:
            data["redis"]["url"] = mask_url(self.redis.url.get_secret_value())
        if self.tracing.exporter_headers is not None:
            data["tracing"]["exporter_headers"] = "**********"
        for secret in ("private_key", "keystore_password", "webhook_secret", "operator_token"):
            if data["relay"].get(secret) is not None:
                data["relay"][secret] = "**********"
        for secret in ("private_key", "keystore_password"):
            if data["anchor"][secret] is not None:
                data["anchor"][secret] = "**********"
        _mask_upstreams(data["upstreams"])
        for network in data["networks"]:
            _mask_upstreams(network["upstreams"])
            for section in ("anchor", "relay"):
                if network[section]["private_key"] is not None:
                    network[section]["private_key"] = "**********"
        return data


def _mask_upstreams(upstreams: list[dict[str, Any]]) -> None:
    for upstream in upstreams:
        upstream["url"] = mask_url(upstream["url"])
        if upstream["ws_url"]:
            upstream["ws_url"] = mask_url(upstream["ws_url"])


SETTINGS = web.AppKey("settings", Settings)


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{value!r} is not a URL with scheme {' or '.join(schemes)}")
    return value


def mask_url(url: str) -> str:
    """Hide the password (and any API key in the path of hosted nodes' URLs) of a URL."""
    parts = urlsplit(url)
    if not parts.netloc:  # sqlite:///path: nothing secret
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    path = parts.path
    # Hosted node URLs carry the API key as the last path segment (…/v3/<key>).
    segments = path.split("/")
    if segments and len(segments[-1]) >= 20:
        segments[-1] = "***"
        path = "/".join(segments)
    return urlunsplit((parts.scheme, netloc, path, parts.query and "***", parts.fragment))


# --- loading ---------------------------------------------------------------------------

# Short environment names of ARCHITECTURE.md -> dotted setting path.
ENV_ALIASES: dict[str, str] = {
    "GATEWAY_HOST": "server.host",
    "GATEWAY_PORT": "server.port",
    "GATEWAY_UPSTREAMS": "upstreams",
    "GATEWAY_CHAIN_ID": "chain_id",
    "GATEWAY_NETWORKS": "networks",
    "GATEWAY_DEFAULT_NETWORK": "default_network",
    "GATEWAY_SIWE_DOMAINS": "identity.siwe_domains",
    "GATEWAY_CORS_ORIGINS": "server.cors_origins",
    "GATEWAY_DATABASE_URL": "storage.database_url",
    "GATEWAY_REDIS_URL": "redis.url",
    "GATEWAY_LOG_LEVEL": "log.level",
    "GATEWAY_LOG_FORMAT": "log.format",
}

OTEL_ENV: dict[str, str] = {
    "OTEL_SERVICE_NAME": "tracing.service_name",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "tracing.exporter_endpoint",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "tracing.exporter_endpoint",
    "OTEL_EXPORTER_OTLP_HEADERS": "tracing.exporter_headers",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "tracing.exporter_headers",
    "OTEL_TRACES_SAMPLER": "tracing.sampler",
    "OTEL_TRACES_SAMPLER_ARG": "tracing.sampler_arg",
    "OTEL_RESOURCE_ATTRIBUTES": "tracing.resource_attributes",
}


def parse_upstreams(value: str) -> list[dict[str, str]]:
    """``http://a:8545|ws://a:8546,http://b:8545`` -> upstream tables."""
    upstreams: list[dict[str, str]] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        http_url, _, ws_url = item.partition("|")
        entry = {"url": http_url.strip()}
        if ws_url.strip():
            entry["ws_url"] = ws_url.strip()
        upstreams.append(entry)
    return upstreams


def _env_value(dotted: str, raw: str) -> object:
    if dotted == "upstreams":
        return parse_upstreams(raw)
    if dotted in {"identity.siwe_domains", "server.cors_origins"}:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if dotted == "tracing.resource_attributes":
        pairs = (item.partition("=") for item in raw.split(",") if item.strip())
        return {key.strip(): value.strip() for key, _, value in pairs}
    if raw.lstrip().startswith(("[", "{")):  # lists and tables as JSON: GATEWAY_X__Y='["a"]'
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # validation names the key
    return raw


def _set_path(data: dict[str, Any], dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def _environment_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Returns the override tree and, for error messages, dotted path -> variable name."""
    overrides: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def put(variable: str, dotted: str) -> None:
        raw = environ[variable]
        if variable == "OTEL_EXPORTER_OTLP_ENDPOINT":  # the base URL of all signals
            raw = raw.rstrip("/") + "/v1/traces"
        _set_path(overrides, dotted, _env_value(dotted, raw))
        origin[dotted] = variable

    # OTEL_SDK_DISABLED is the standard switch for the whole SDK.
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        _set_path(overrides, "tracing.enabled", value=False)
        origin["tracing.enabled"] = "OTEL_SDK_DISABLED"
    for variable, dotted in OTEL_ENV.items():  # signal-specific names come later and win
        if environ.get(variable):
            put(variable, dotted)
    for variable in sorted(environ):
        if variable.startswith("GATEWAY_") and "__" in variable:
            put(variable, variable.removeprefix("GATEWAY_").lower().replace("__", "."))
    for variable, dotted in ENV_ALIASES.items():
        if variable in environ:
            put(variable, dotted)
    return overrides, origin


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ErrorDetails, origin: Mapping[str, str]) -> str:
    dotted = ".".join(str(part) for part in error["loc"])
    source = next((variable for path, variable in origin.items() if dotted.startswith(path)), None)
    where = f"{dotted} (from {source})" if source else dotted
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    secret = dotted.endswith(("url", "headers", "key", "secret", "password"))
    if error["type"] != "extra_forbidden" and not secret:
        message = f"{message}, got {error['input']!r}"
    return f"{where}: {message}"


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read ``path`` (TOML, optional), overlay the environment, validate everything.

    Raises SettingsError naming every bad key and what it accepts.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError([f"config file {path}: {exc.strerror}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"config file {path}: {exc}"]) from exc
    overrides, origin = _environment_overrides(environ)
    try:
        return Settings.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise SettingsError([_describe(error, origin) for error in exc.errors()]) from exc
