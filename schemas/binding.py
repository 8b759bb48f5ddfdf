"""The CloudEvents Kafka protocol binding (version 1.0): which content mode a message uses, its
size, and a binary-mode message's `ce_` headers as a structured event. Pure.

Source: github.com/cloudevents/spec, cloudevents/bindings/kafka-protocol-binding.md §3.

- **structured**: the `content-type` header starts with `application/cloudevents` (any case);
  the value is the event in the JSON event format (`application/cloudevents+json`, with or
  without parameters). Another event format (`+avro`, or the batch format, which the Kafka
  binding does not define) is refused as `undecodable`. `ce_` headers beside a structured event
  are allowed by the binding and ignored: the value is the event.
- **binary**: otherwise, when any header starts with `ce_`: each `ce_<name>` header is the
  attribute `<name>` (UTF-8 text), the `content-type` header is `datacontenttype`, the value is
  `data` (here a JSON object).
- a message with neither (no CloudEvents `content-type`, no `ce_` header) is read as structured
  JSON: what Surplus's agents sent before the binding was followed, and what `surplus demo` sends.

Header names are compared as the binding spells them, except `content-type`, which is matched in
any case (a habit of HTTP clients).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Final

CE_PREFIX: Final = "ce_"
CONTENT_TYPE: Final = "content-type"
STRUCTURED_PREFIX: Final = b"application/cloudevents"
JSON_FORMAT: Final = "application/cloudevents+json"

Headers = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None]


class Mode(Enum):
    STRUCTURED = "structured"
    BINARY = "binary"


class Unsupported:
    """A structured-mode message in an event format other than JSON."""

    def __init__(self, media_type: str) -> None:
        self.media_type = media_type


def header_items(headers: Headers | None) -> Sequence[tuple[str, bytes | None]]:
    """The headers as (name, value) pairs in their order (a mapping keeps one value per name)."""
    if not headers:
        return ()
    if type(headers) is tuple or type(headers) is list:  # the worker's case, without an ABC check
        return headers
    if isinstance(headers, Mapping):
        return tuple(headers.items())
    return tuple(headers)


_JSON_FORMAT_BYTES: Final = JSON_FORMAT.encode()


def inspect(value: bytes, headers: Sequence[tuple[str, bytes | None]]) -> tuple[int, Mode | Unsupported]:
    """(size, content mode): bytes of the value plus every header's name and value (what the
    64 KiB limit counts), and the mode the binding (§3) reads from the headers."""
    total = len(value)
    binary = False
    mode: Mode | Unsupported | None = None
    for name, header_value in headers:
        total += (len(name) if name.isascii() else len(name.encode("utf-8", "surrogateescape")))
        if header_value is None:
            continue
        total += len(header_value)
        if name[:3] == CE_PREFIX:
            binary = True
        elif mode is None and len(name) == 12 and name.lower() == CONTENT_TYPE:
            if header_value == _JSON_FORMAT_BYTES:
                mode = Mode.STRUCTURED
            elif header_value[:23].lower() == STRUCTURED_PREFIX:
                media_type = header_value.split(b";", 1)[0].strip().lower().decode("ascii", "replace")
                mode = Mode.STRUCTURED if media_type == JSON_FORMAT else Unsupported(media_type[:60])
    if mode is None:
        mode = Mode.BINARY if binary else Mode.STRUCTURED
    return total, mode


class Attributes:
    """A binary-mode message's attributes, read from its headers before any validation."""

    __slots__ = ("duplicate", "undecodable", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.duplicate: str | None = None  # the first attribute given twice (a `schema` reject)
        self.undecodable: str | None = None  # the first header that is not UTF-8


def attributes(headers: Sequence[tuple[str, bytes | None]]) -> Attributes:
    """`ce_<name>` headers as attributes, and `content-type` as `datacontenttype` (§3.2)."""
    found = Attributes()
    for name, raw in headers:
        if name.startswith(CE_PREFIX):
            attribute = name[len(CE_PREFIX):]
        elif name.lower() == CONTENT_TYPE:
            attribute = "datacontenttype"
        else:
            continue
        try:
            text = (raw or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            if found.undecodable is None:
                found.undecodable = f"header {_short(name)} is not UTF-8 at byte {exc.start}"
            continue
        if attribute in found.values and found.duplicate is None:
            found.duplicate = attribute
        found.values[attribute] = text
    return found


def _short(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."
