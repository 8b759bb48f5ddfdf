"""The closed set of reasons a message is rejected to the dead letters (SPEC §3), in check order. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA = "schema"
    INCONSISTENT = "inconsistent"
    FUTURE_TIME = "future_time"
    UNKNOWN_DEVICE_MODEL = "unknown_device_model"
    COUNTER_REGRESSION = "counter_regression"


DETAIL_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a message was not accepted: a reason from the closed set and a short detail."""

    reason: Reason
    detail: str

    def __post_init__(self) -> None:
        if len(self.detail) > DETAIL_MAX_CHARS:
            object.__setattr__(self, "detail", self.detail[: DETAIL_MAX_CHARS - 1] + "…")
