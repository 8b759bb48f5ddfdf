"""The `X-Surplus-Signature` header: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>. Pure.

`verify` is what a receiver runs (and what the tests run): constant-time comparison, and a
tolerance on the timestamp so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Surplus-Signature"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: bytes, header: str, body: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """True when `header` signs `body` with `secret` and its time is within the tolerance."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))
