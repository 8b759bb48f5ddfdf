"""decode(raw, now, headers) -> Event | Reject: every validation rule of SPEC §3, in its order. Pure.

Both content modes of the CloudEvents Kafka binding (schemas/binding.py) decode to the same event
and the same dedup identity (`source` + `id`). The checks run in the contract's order and the
first failure names the reason: too_large (value plus headers), undecodable, bad_signature (only
when a verifier is given), unknown_type, schema, inconsistent, future_time, unknown_device_model
(capacity events only). counter_regression needs per-job state and is the ledger's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, cast

from pydantic import ValidationError

from schemas import binding, registry
from schemas.binding import Headers, Mode, Unsupported
from schemas.catalogue import Catalogue, load_catalogue
from schemas.events import (
    MAX_DEVICES,
    Capacity,
    CapacityEvent,
    Event,
    Power,
    PowerEvent,
)
from schemas.reasons import Reason, Reject
from schemas.signing import binary_signing_input

MAX_BYTES: Final = 64 * 1024
FUTURE_TOLERANCE: Final = timedelta(seconds=300)
SOURCES_TOLERANCE: Final = 0.001  # the three sources sum to facility energy within 0.1 %
_ESCAPED_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
CAPACITY: Final = "cpn.capacity.v1"
POWER: Final = "cpn.power.v1"


class _Unchecked:
    """Marker: the caller has no message key to compare (e.g. a file, not a Kafka message)."""


UNCHECKED: Final = _Unchecked()

# (signing input, message headers, the event as a JSON object) -> None when genuine, else why
# not. The signing input is the value in structured mode and the canonical form of the `ce_`
# headers and the value in binary mode (schemas/signing.py).
Verifier = Callable[[bytes, Mapping[str, bytes], dict[str, object]], str | None]


def decode(
    raw: bytes,
    *,
    now: datetime,
    key: bytes | str | _Unchecked | None = UNCHECKED,
    headers: Headers | None = None,
    verifier: Verifier | None = None,
    catalogue: Catalogue | None = None,
) -> Event | Reject:
    """Validate one Kafka message (value, key, headers); return the event or the first rule it breaks.

    `headers` are the record's headers as (name, value) pairs (or a mapping); they choose the
    content mode. Without headers the value is a structured-mode event.
    """
    items = binding.header_items(headers)
    mode: Mode | Unsupported = Mode.STRUCTURED
    size = len(raw)
    if items:
        size, mode = binding.inspect(raw, items)
    if size > MAX_BYTES:
        return Reject(Reason.TOO_LARGE, f"{size} bytes of value and headers, the limit is {MAX_BYTES}")
    if mode is Mode.BINARY:
        return _binary(raw, items, now, key, verifier, catalogue)
    if isinstance(mode, Unsupported):
        return Reject(Reason.UNDECODABLE, f"event format {mode.media_type!r} is not supported "
                                          f"(structured mode is {binding.JSON_FORMAT})")
    if verifier is None:
        # fast path: pydantic's own JSON parser validates in one pass; anything it refuses takes
        # the slow path below, which names the reason in the contract's order
        try:
            fast: Event = registry.adapter().validate_json(raw)
        except (ValidationError, ValueError, RecursionError):
            pass
        else:
            return checked(fast, now, key, catalogue)
    obj = _json_object(raw)
    if isinstance(obj, Reject):
        return obj
    if verifier is not None:
        why = verifier(raw, dict(items), obj)  # type: ignore[arg-type]
        if why is not None:
            return Reject(Reason.BAD_SIGNATURE, why)
    return _validated(obj, now, key, catalogue)


def _binary(
    raw: bytes,
    items: Sequence[tuple[str, bytes | None]],
    now: datetime,
    key: bytes | str | _Unchecked | None,
    verifier: Verifier | None,
    catalogue: Catalogue | None,
) -> Event | Reject:
    """Binary content mode: the attributes are `ce_` headers, the value is `data`."""
    found = binding.attributes(items)
    if found.undecodable is not None:
        return Reject(Reason.UNDECODABLE, found.undecodable)
    data = _json_object(raw)
    if isinstance(data, Reject):
        return Reject(data.reason, f"value (data): {data.detail}")
    obj: dict[str, object] = dict(found.values)
    reserved = "data" in obj
    obj["data"] = data
    if verifier is not None:
        signing_input = binary_signing_input(items, raw)
        if isinstance(signing_input, str):
            return Reject(Reason.BAD_SIGNATURE, signing_input)
        why = verifier(signing_input, dict(items), obj)  # type: ignore[arg-type]
        if why is not None:
            return Reject(Reason.BAD_SIGNATURE, why)
    if found.duplicate is not None:
        return _unknown_type(obj) or Reject(
            Reason.SCHEMA, f"{found.duplicate}: the attribute is given twice in the headers")
    if reserved:
        return _unknown_type(obj) or Reject(Reason.SCHEMA, "data: ce_data is not an attribute "
                                                           "(the value is the data)")
    return _validated(obj, now, key, catalogue)


def _unknown_type(obj: dict[str, object]) -> Reject | None:
    event_type = obj.get("type")
    if isinstance(event_type, str) and event_type in registry.EVENT_TYPES:
        return None
    return Reject(Reason.UNKNOWN_TYPE, f"type {_short(event_type)} is not a known event type")


def _validated(
    obj: dict[str, object], now: datetime, key: bytes | str | _Unchecked | None,
    catalogue: Catalogue | None,
) -> Event | Reject:
    """The checks from `unknown_type` on, over an event as a JSON object."""
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
    return checked(event, now, key, catalogue)


def checked(
    event: Event, now: datetime, key: bytes | str | _Unchecked | None, catalogue: Catalogue | None
) -> Event | Reject:
    """The checks after the model: cross-field rules, the clock, the catalogue (also over the
    fast path's twins of the models, schemas/fastdecode.py, which have the same `type`s)."""
    why = inconsistency(event, key)
    if why is not None:
        return Reject(Reason.INCONSISTENT, why)
    if event.time - now > FUTURE_TOLERANCE:
        ahead = (event.time - now).total_seconds()
        return Reject(Reason.FUTURE_TIME, f"time is {ahead:.0f} s ahead of the receiver's clock")
    # capacity only: job events are metered for any model, priced from the price book (§3, §4)
    event_type: str = event.type  # a str, not the models' literals: the fast path's twins pass here too
    capacity = event_type == CAPACITY or isinstance(event, CapacityEvent)
    if capacity and cast(Capacity, event.data).peak_tflops_per_device is None:
        model = cast(Capacity, event.data).device_model
        if model not in (catalogue or load_catalogue()):
            return Reject(
                Reason.UNKNOWN_DEVICE_MODEL,
                f"device_model {model!r} is not in the catalogue and no peak is given",
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
    event_type: str = event.type  # a str, not the models' literals: the fast path's twins pass here too
    if event_type == CAPACITY or isinstance(event, CapacityEvent):
        c = cast(Capacity, event.data)
        if not c.devices_allocated <= c.devices_online <= c.devices_total <= MAX_DEVICES:
            return (
                f"needs devices_allocated <= devices_online <= devices_total <= {MAX_DEVICES}: "
                f"{c.devices_allocated}, {c.devices_online}, {c.devices_total}"
            )
    elif event_type == POWER or isinstance(event, PowerEvent):
        p = cast(Power, event.data)
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
