"""decode(raw, now) -> Event | Reject: every validation rule of SPEC §3, in its order. Pure.

The checks run in the contract's order and the first failure names the reason: too_large,
undecodable, bad_signature (only when a verifier is given), unknown_type, schema, inconsistent,
future_time, unknown_device_model. counter_regression needs per-job state and is the ledger's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Final

from pydantic import ValidationError

from schemas import registry
from schemas.catalogue import Catalogue, load_catalogue
from schemas.events import (
    MAX_DEVICES,
    CapacityEvent,
    Event,
    JobEvent,
    PowerEvent,
)
from schemas.reasons import Reason, Reject

MAX_BYTES: Final = 64 * 1024
FUTURE_TOLERANCE: Final = timedelta(seconds=300)
SOURCES_TOLERANCE: Final = 0.001  # the three sources sum to facility energy within 0.1 %
_ESCAPED_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


class _Unchecked:
    """Marker: the caller has no message key to compare (e.g. a file, not a Kafka message)."""


UNCHECKED: Final = _Unchecked()

# (raw value bytes, message headers, decoded JSON object) -> None when genuine, else why not
Verifier = Callable[[bytes, Mapping[str, bytes], dict[str, object]], str | None]


def decode(
    raw: bytes,
    *,
    now: datetime,
    key: bytes | str | _Unchecked | None = UNCHECKED,
    headers: Mapping[str, bytes] | None = None,
    verifier: Verifier | None = None,
    catalogue: Catalogue | None = None,
) -> Event | Reject:
    """Validate one message value; return the event, or the first rule it breaks."""
    if len(raw) > MAX_BYTES:
        return Reject(Reason.TOO_LARGE, f"{len(raw)} bytes, the limit is {MAX_BYTES}")
    if verifier is None:
        # fast path: pydantic's own JSON parser validates in one pass; anything it refuses takes
        # the slow path below, which names the reason in the contract's order
        try:
            fast: Event = registry.adapter().validate_json(raw)
        except (ValidationError, ValueError, RecursionError):
            pass
        else:
            return _checked(fast, now, key, catalogue)
    obj = _json_object(raw)
    if isinstance(obj, Reject):
        return obj
    if verifier is not None:
        why = verifier(raw, headers or {}, obj)
        if why is not None:
            return Reject(Reason.BAD_SIGNATURE, why)
    event_type = obj.get("type")
    model = registry.EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        return Reject(Reason.UNKNOWN_TYPE, f"type {_short(event_type)} is not a known event type")
    try:
        event: Event = model.model_validate(obj)  # type: ignore[assignment]
    except ValidationError as exc:
        return Reject(Reason.SCHEMA, first_error(exc))
    except (RecursionError, ValueError, TypeError) as exc:  # pathological input
        return Reject(Reason.SCHEMA, f"{type(exc).__name__}")
    return _checked(event, now, key, catalogue)


def _checked(
    event: Event, now: datetime, key: bytes | str | _Unchecked | None, catalogue: Catalogue | None
) -> Event | Reject:
    """The checks after the model: cross-field rules, the clock, the catalogue."""
    why = inconsistency(event, key)
    if why is not None:
        return Reject(Reason.INCONSISTENT, why)
    if event.time - now > FUTURE_TOLERANCE:
        ahead = (event.time - now).total_seconds()
        return Reject(Reason.FUTURE_TIME, f"time is {ahead:.0f} s ahead of the receiver's clock")
    if isinstance(event, CapacityEvent | JobEvent):
        data = event.data
        has_peak = isinstance(event, CapacityEvent) and event.data.peak_tflops_per_device is not None
        if not has_peak and data.device_model not in (catalogue or load_catalogue()):
            return Reject(
                Reason.UNKNOWN_DEVICE_MODEL,
                f"device_model {data.device_model!r} is not in the catalogue and no peak is given",
            )
    return event


def _json_object(raw: bytes) -> dict[str, object] | Reject:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(Reason.UNDECODABLE, f"not UTF-8 at byte {exc.start}")
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        return Reject(Reason.UNDECODABLE, "JSON nested too deeply")
    except ValueError as exc:
        return Reject(Reason.UNDECODABLE, f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Reject(Reason.UNDECODABLE, f"JSON {type(obj).__name__}, not an object")
    if _ESCAPED_SURROGATE.search(raw):
        try:  # an escaped lone surrogate is not Unicode: it could not be stored as UTF-8
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return Reject(Reason.UNDECODABLE, "JSON string with a lone surrogate")
    return obj


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def inconsistency(event: Event, key: bytes | str | _Unchecked | None = UNCHECKED) -> str | None:
    """The first cross-field rule the event breaks, or None."""
    data = event.data
    if event.source_dc != data.dc_id:
        return f"source names DC {event.source_dc!r} but data.dc_id is {data.dc_id!r}"
    if not isinstance(key, _Unchecked):
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if key_text != data.dc_id:
            return f"message key {_short(key_text)} is not data.dc_id {data.dc_id!r}"
    if isinstance(event, CapacityEvent):
        c = event.data
        if not c.devices_allocated <= c.devices_online <= c.devices_total <= MAX_DEVICES:
            return (
                f"needs devices_allocated <= devices_online <= devices_total <= {MAX_DEVICES}: "
                f"{c.devices_allocated}, {c.devices_online}, {c.devices_total}"
            )
    elif isinstance(event, PowerEvent):
        p = event.data
        if p.facility_energy_kwh < p.it_energy_kwh:
            return f"facility_energy_kwh {p.facility_energy_kwh} < it_energy_kwh {p.it_energy_kwh}"
        s = p.sources_kwh
        total = s.grid + s.green_contract + s.onsite_renewable
        if abs(total - p.facility_energy_kwh) > SOURCES_TOLERANCE * p.facility_energy_kwh:
            return f"sources_kwh sum to {total:g}, not facility_energy_kwh {p.facility_energy_kwh:g}"
    return None


def first_error(exc: ValidationError) -> str:
    """One line naming the first broken field: `data.busy_ratio: Input should be ...`."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"]) or "event"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {err['msg']}{more}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
