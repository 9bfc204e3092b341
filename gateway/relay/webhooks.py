"""Status changes of relayed requests, POSTed to the configured URLs from an outbox.

An event is written in the same database transaction as the status change it reports, and
delivered by the sender's leader until the receiver answers 2xx (retried with exponential
backoff, at most ``webhook_max_attempts`` times). Each body is signed:
``X-Gateway-Signature: sha256=<hex HMAC-SHA256 of "<X-Gateway-Timestamp>.<body>">``, so a
receiver checks the sender and refuses old replays; ``eventId`` lets it drop duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import aiohttp
import orjson
import structlog

from gateway.background import Rounds
from gateway.chain.signatures import checksum_address
from gateway.clock import rfc3339
from gateway.config import RelaySettings
from gateway.relay.store import Events, WebhookOutbox
from gateway.telemetry import Metrics
from gateway.telemetry.metrics import failures_counter

log = structlog.get_logger("gateway.relay.webhooks")

NEVER = 1e18  # next_attempt_at of an event given up on
CONCURRENCY = 16  # deliveries in flight


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


class Webhooks:
    def __init__(
        self,
        settings: RelaySettings,
        store: WebhookOutbox,
        session: aiohttp.ClientSession,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.round_health = Rounds("webhook", log, failures_counter(metrics, "webhooks"))
        secret = settings.webhook_secret
        self.secret = secret.get_secret_value().encode() if secret is not None else b""

    def events(self, row: Any, status: str, **fields: Any) -> Events:  # noqa: ANN401
        """The events of ``row`` reaching ``status`` (none without webhook URLs)."""
        if not self.settings.webhooks:
            return []
        body = orjson.dumps(
            {
                "eventId": f"{row.id}:{status}:{row.attempts}",
                "id": row.id,
                "status": status,
                "from": checksum_address(row.signer),
                "chainId": row.chain_id,
                **fields,
                "at": rfc3339(time.time(), timespec="milliseconds"),
            }
        ).decode()
        return [(url, body) for url in self.settings.webhooks]

    async def run_forever(self, poll_interval_s: float) -> None:
        """Deliver due events (one replica at a time), several at once."""
        while True:
            try:
                async with self.store.leadership() as leader:
                    if leader:
                        await self.deliver_due()
                self.round_health.succeeded()
            except Exception as exc:  # noqa: BLE001  # the loop outlives a failed round
                self.round_health.failed(exc)
            await asyncio.sleep(poll_interval_s)

    async def deliver_due(self) -> None:
        events = await self.store.due_events(time.time(), limit=CONCURRENCY * 4)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def deliver(event: Any) -> tuple[int, bool, float, str | None]:  # noqa: ANN401
            async with slots:
                return await self._deliver(event)

        outcomes = await asyncio.gather(*(deliver(event) for event in events))
        if outcomes:
            await self.store.events_attempted(list(outcomes))

    async def _deliver(self, event: Any) -> tuple[int, bool, float, str | None]:  # noqa: ANN401
        """One attempt: (event id, delivered, next attempt at, error)."""
        body = event.body.encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Gateway-Timestamp": timestamp,
            "X-Gateway-Signature": signature(self.secret, timestamp, body),
        }
        error: str | None = None
        try:
            async with self.session.post(
                event.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if 200 <= response.status < 300:
                    return event.id, True, time.time(), None
                error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        attempts = event.attempts + 1
        if attempts >= self.settings.webhook_max_attempts:
            log.error("webhook given up", url=event.url, event=event.id, error=error)
            return event.id, False, NEVER, error
        later = time.time() + self.settings.webhook_backoff_s * 2 ** (attempts - 1)
        return event.id, False, later, error
