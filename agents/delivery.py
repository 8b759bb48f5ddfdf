"""Delivery reports as the outbox sees them: `None` (delivered) or a `DeliveryError`. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.records import Record


@dataclass(frozen=True)
class DeliveryError:
    """Why a record was not delivered: the producer's error name and what the outbox should do."""

    name: str
    detail: str
    permanent: bool = False  # resending cannot help: give the record up
    fatal: bool = False  # the producer is unusable: build a new one, resend everything
    purged: bool = False  # we purged it ourselves (before a resend)


OnDelivery = Callable[[Record, DeliveryError | None], None]
