"""`decode_fast`: msgspec twins of the common event models, in front of decode (schemas/decode.py). Pure.

The contract is the pydantic models (schemas/events.py) and decode's rules; these `Struct`s
only decide faster, never differently. They accept a strict subset of what the models accept,
with the same values: a structured-mode `cpn.capacity.v1`, `cpn.power.v1` or `cpn.heartbeat.v1`
event with the attributes the agents send (`specversion`, `id` in printable ASCII, `source`,
`type`, `time`, `datacontenttype` `application/json` or absent), no extension attribute,
integers written as JSON integers, printable-ASCII heartbeat strings. Everything else fails
here and takes the models' path, which names the reason of a reject. `time` is parsed by the
models' own parser (`schemas.events._rfc3339`, memoised per string: a fleet's events share
their ticks); the cross-field, clock and catalogue rules are decode's (`checked`), restated in
`decode_fast` for speed and held to it by the tests.

Why: msgspec (github.com/jcrist/msgspec) validates JSON into `Struct`s in one C pass without a
dict per object; measured in bench/worker_bench.py. tests/unit/test_fast_decode.py holds the
fast path to the models on generated valid and invalid documents (a hypothesis property) and
on the real-world cases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec

from schemas import binding
from schemas.attributes import FINITE_MAX
from schemas.catalogue import Catalogue, load_catalogue
from schemas.decode import FUTURE_TOLERANCE, MAX_BYTES, SOURCES_TOLERANCE
from schemas.events import INT64_MAX, MAX_DEVICES, MAX_TOTAL, UINT32_MAX, _rfc3339

# Python's `re` (what msgspec's patterns use) reads `$` as "end or before a final newline"; the
# models' patterns (Rust regex) mean the end: `\Z` here. The ids, `source` and `id` are plain
# strings to msgspec and checked in `decode_fast` (a pattern per field was two thirds of the
# decoder's time): ids against IDENT, remembered once valid (a fleet repeats its DCs and pools),
# `source` as SOURCE_PREFIX + a valid `dc_id`, `id` as 1..128 printable ASCII characters (a
# subset of the models' ce_string(1, 128)).
IDENT: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
SOURCE_PREFIX: Final = "//cpn/dc/"
Ident = str
Count = Annotated[int, msgspec.Meta(ge=0)]
Count64 = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Count32 = Annotated[int, msgspec.Meta(ge=0, le=UINT32_MAX)]
IntervalS = Annotated[int, msgspec.Meta(ge=1, le=3600)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0, le=FINITE_MAX)]
Total = Annotated[float, msgspec.Meta(ge=0, le=MAX_TOTAL)]
Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]
JsonMediaType = Literal["application/json"]  # the common spelling; others take decode's path


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class PeakTflops(_Strict):
    fp16: NonNegFloat | None = None
    fp32: NonNegFloat | None = None
    fp64: NonNegFloat | None = None


class Capacity(_Strict):
    dc_id: Ident
    pool_id: Ident
    device_model: Ident
    devices_total: Count
    devices_online: Count
    devices_allocated: Count
    interval_s: IntervalS
    busy_ratio: Ratio | None = None
    peak_tflops_per_device: PeakTflops | None = None


class SourcesKwh(_Strict):
    grid: NonNegFloat
    green_contract: NonNegFloat
    onsite_renewable: NonNegFloat


class Power(_Strict):
    dc_id: Ident
    interval_s: IntervalS
    it_energy_kwh: NonNegFloat
    facility_energy_kwh: NonNegFloat
    sources_kwh: SourcesKwh
    grid_renewable_share: Ratio
    grid_emission_g_per_kwh: NonNegFloat


class Heartbeat(_Strict):
    dc_id: Ident
    agent_version: Annotated[str, msgspec.Meta(pattern=r"^[\x20-\x7e]{1,64}\Z")]
    boot_id: Annotated[str, msgspec.Meta(pattern=r"^[\x20-\x7e]{1,128}\Z")]
    uptime_s: NonNegFloat
    spool_backlog_events: Count64
    spool_oldest_age_s: NonNegFloat


class _Envelope(_Strict, tag_field="type", kw_only=True):
    """The attributes; `time` is the wire string until `fast` replaces it by the parsed time."""

    type: ClassVar[str]
    specversion: Literal["1.0"]
    id: str
    source: str
    time: Any  # str on the wire (checked by the models' parser), then the parsed datetime
    datacontenttype: JsonMediaType | None = None

    @property
    def source_dc(self) -> str:
        return self.source[len(SOURCE_PREFIX):]


class CapacityEvent(_Envelope, tag="cpn.capacity.v1"):
    type: ClassVar[str] = "cpn.capacity.v1"
    data: Capacity


class PowerEvent(_Envelope, tag="cpn.power.v1"):
    type: ClassVar[str] = "cpn.power.v1"
    data: Power


class HeartbeatEvent(_Envelope, tag="cpn.heartbeat.v1"):
    type: ClassVar[str] = "cpn.heartbeat.v1"
    data: Heartbeat


FastEvent = CapacityEvent | PowerEvent | HeartbeatEvent
DECODER: Final = msgspec.json.Decoder(FastEvent)
_TIMES: dict[str, datetime | None] = {}
_IDENTS: set[str] = set()
_IDENTS_MAX: Final = 1 << 18
_TIMES_MAX: Final = 1 << 16
ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def valid_ident(text: str) -> bool:
    """`text` matches the models' ID_PATTERN (remembered when it does)."""
    if text in _IDENTS:
        return True
    if IDENT.match(text) is None:
        return False
    if len(_IDENTS) >= _IDENTS_MAX:
        _IDENTS.clear()
    _IDENTS.add(text)
    return True


def parse_time(text: object) -> datetime | None:
    """The models' parse of a `time` string (memoised: a fleet's events share their ticks), or
    None when the models refuse it."""
    if type(text) is not str:
        return None
    parsed = _TIMES.get(text, _TIMES)  # the dict itself marks "not seen"
    if parsed is not _TIMES:
        return parsed  # type: ignore[return-value]
    try:
        found: datetime | None = _rfc3339(text)
    except ValueError:
        found = None
    if len(_TIMES) >= _TIMES_MAX:
        _TIMES.clear()
    _TIMES[text] = found
    return found


# the headers an agent sends with a structured-mode event (agents/publisher.py), and their bytes
AGENT_HEADERS: Final = (("content-type", binding.JSON_FORMAT.encode()),)
_AGENT_HEADER_BYTES: Final = sum(len(n) + len(v) for n, v in AGENT_HEADERS)


def decode_fast(
    raw: bytes, key: bytes | None, headers: Sequence[tuple[str, bytes | None]], now: datetime,
    catalogue: Catalogue,
) -> FastEvent | None:
    """What `decode` returns for an unsigned message when it is an accepted event of the fast
    subset (this module), else None (then `decode` decides, reason and all).

    `headers` must be empty or exactly AGENT_HEADERS (the structured mode); the event returned
    has the models' attribute names and values, which is all the row builders read."""
    if headers:
        if headers != AGENT_HEADERS or len(raw) + _AGENT_HEADER_BYTES > MAX_BYTES:
            return None
    elif len(raw) > MAX_BYTES:
        return None
    try:
        event = DECODER.decode(raw)
    except ERRORS:
        return None
    moment = parse_time(event.time)
    if moment is None or moment - now > FUTURE_TOLERANCE:
        return None
    event.time = moment
    # decode.checked's rules, restated for the twins without its dispatch (a third of this
    # path's cost); tests/unit/test_fast_decode.py holds the two to the same verdicts
    d = event.data
    dc_id = d.dc_id
    source, event_id = event.source, event.id
    if (source[9:] != dc_id or source[:9] != SOURCE_PREFIX or key is None or key != dc_id.encode()
            or not valid_ident(dc_id) or not 0 < len(event_id) <= 128 or not event_id.isascii()
            or not event_id.isprintable()):
        return None
    kind = type(event)
    if kind is CapacityEvent:
        c: Capacity = d  # type: ignore[assignment]
        if not (valid_ident(c.pool_id) and valid_ident(c.device_model)):
            return None
        if not c.devices_allocated <= c.devices_online <= c.devices_total <= MAX_DEVICES:
            return None
        if c.peak_tflops_per_device is None and c.device_model not in (catalogue or load_catalogue()):
            return None
    elif kind is PowerEvent:
        p: Power = d  # type: ignore[assignment]
        if p.facility_energy_kwh < p.it_energy_kwh:
            return None
        src = p.sources_kwh
        if abs(src.grid + src.green_contract + src.onsite_renewable - p.facility_energy_kwh) > (
                SOURCES_TOLERANCE * p.facility_energy_kwh):
            return None
    return event
