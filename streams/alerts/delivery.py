"""Webhook delivery over httpx: sign, POST, retry with jittered exponential back-off. I/O (HTTP).

Each attempt is reported to `on_attempt` (the alert_notifications log). A 2xx delivers; a
connection error, a timeout, 408, 429 or a 5xx is retried up to the receiver's `max_attempts`;
any other status is final. `send` never raises for a receiver's failure: it returns the outcome
and the caller keeps what was not delivered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx

from streams.alerts.config import Receiver
from streams.alerts.model import Attempt, Notification
from streams.alerts.sign import HEADER, signature

USER_AGENT = "Surplus-Alerts/1 (Alertmanager webhook v4)"
RETRYABLE = {408, 425, 429}


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    attempts: int
    http_status: int
    error: str


def backoff_s(receiver: Receiver, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Delay after failed attempt number `attempt` (1-based): doubling, capped, +-50 % jitter."""
    base = min(receiver.max_backoff_s, receiver.backoff_s * 2.0 ** (attempt - 1))
    return float(base * (0.5 + rng()))


def headers(receiver: Receiver, n: Notification, now_s: int) -> dict[str, str]:
    out = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Surplus-Notification-Id": n.id,
    }
    secret = receiver.secret_bytes()
    if secret is not None:
        out[HEADER] = signature(secret, now_s, n.body)
    return out


class Deliverer:
    """Sends notifications to the configured receivers with one shared httpx.AsyncClient."""

    def __init__(
        self,
        receivers: Mapping[str, Receiver],
        *,
        on_attempt: Callable[[Attempt], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.receivers = dict(receivers)
        self.on_attempt = on_attempt
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, n: Notification, *, max_attempts: int | None = None) -> Outcome:
        receiver = self.receivers.get(n.receiver)
        if receiver is None:
            return Outcome(False, 0, 0, f"receiver {n.receiver!r} is not configured")
        budget = max_attempts or receiver.max_attempts
        status, error = 0, ""
        for attempt in range(1, budget + 1):
            status, error, retry = await self._attempt(receiver, n, attempt, budget)
            if not error:
                return Outcome(True, attempt, status, "")
            if not retry or attempt == budget:
                return Outcome(False, attempt, status, error)
            await self.sleep(backoff_s(receiver, attempt, self.rng))
        return Outcome(False, budget, status, error)

    async def _attempt(
        self, receiver: Receiver, n: Notification, attempt: int, budget: int
    ) -> tuple[int, str, bool]:
        started = time.perf_counter()
        status, error, retry = 0, "", True
        try:
            response = await self._client.post(
                receiver.url,
                content=n.body,
                headers=headers(receiver, n, int(self.clock().timestamp())),
                timeout=receiver.timeout_s,
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
                retry = status >= 500 or status in RETRYABLE
        except httpx.TimeoutException:
            error = f"timeout after {receiver.timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        latency_ms = (time.perf_counter() - started) * 1000
        if self.on_attempt is not None:
            outcome: Literal["delivered", "retry", "failed"] = "delivered"
            if error:
                outcome = "retry" if retry and attempt < budget else "failed"
            await self.on_attempt(
                Attempt(
                    ts=self.clock(),
                    notification_id=n.id,
                    receiver=n.receiver,
                    group_key=n.group_key,
                    status=n.status,
                    attempt=attempt,
                    http_status=status,
                    latency_ms=latency_ms,
                    outcome=outcome,
                    error=error,
                )
            )
        return status, error, retry
