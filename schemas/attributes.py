"""CloudEvents 1.0 context-attribute rules as pydantic types: names, the type system, integral
numbers. Pure.

Sources: CloudEvents 1.0 core spec, "Naming Conventions" and "Type System"
(github.com/cloudevents/spec, cloudevents/spec.md) and the JSON event format, "Type System
Mapping" (cloudevents/formats/json-format.md).

- An attribute name is lowercase ASCII letters and digits, at least one (`ATTRIBUTE_NAME`); the
  spec RECOMMENDS at most 20 characters and a leading letter, which are accepted either way.
  `data` is reserved.
- A `String` has no control characters (U+0000-U+001F, U+007F-U+009F) and no Unicode
  noncharacters (U+FDD0-U+FDEF and U+xFFFE, U+xFFFF in every plane); a lone surrogate is not
  Unicode at all and is refused before this (`undecodable`).
- An extension attribute's value is a JSON string, boolean or `Integer` (-2^31..2^31-1) in
  structured mode, a header string in binary mode; `null` means unset (JSON format §2.2).
- A count or integer field given as a JSON number with a zero fractional part (`512.0`,
  `5.12e2`) is that integer; `512.5` is not (SPEC §3). JSON Schema's `integer` means exactly that.

Every pattern here is written so that Rust's `regex` (pydantic-core), Python's `re` and
ECMA-262 with the `u` flag (JSON Schema) read it alike; each type carries its JSON Schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, GetPydanticSchema, WithJsonSchema
from pydantic_core import core_schema

ATTRIBUTE_NAME_PATTERN: Final = "^[a-z0-9]+$"  # `data` is reserved: it is the payload field
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1
FINITE_MAX: Final = 1.7976931348623157e308  # the largest double: keeps an overflowed `1e400` out

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    chr(plane * 0x10000 + 0xFFFE) + chr(plane * 0x10000 + 0xFFFF) for plane in range(17)
)
# one character of a CloudEvents String (literal code points, no escapes: every engine agrees)
STRING_CHAR: Final = f"[^\x00-\x1f\x7f-\x9f{_NONCHARACTERS}]"

# RFC 3986 §4.3 absolute-URI: scheme ":" hier-part [ "?" query ], no fragment (the CloudEvents
# `URI` type), over the characters RFC 3986 allows (unreserved, reserved, percent-escapes)
URI_PATTERN: Final = (
    r"^[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$"
)


def _ci(word: str) -> str:
    """A case-insensitive pattern for an ASCII word of letters, digits, `/` and `-`, as character
    classes (ECMA-262 has no inline flags; `\\-` outside a class is an error with its `u` flag)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


# `application/json`, media type and parameter name case-insensitive (RFC 2045), optionally with
# the only charset JSON has (RFC 8259 §8.1)
JSON_MEDIA_TYPE_PATTERN: Final = (
    f"^{_ci('application/json')}(?:[ \t]*;[ \t]*{_ci('charset')}=(?:{_ci('utf-8')}|\"{_ci('utf-8')}\"))?$"
)


def _with_error(schema: core_schema.CoreSchema, kind: str, message: str) -> core_schema.CoreSchema:
    return core_schema.custom_error_schema(schema, custom_error_type=kind, custom_error_message=message)


def _whole(value: float) -> int:
    # float.is_integer, not pydantic's `multiple_of`, which tolerates a remainder below epsilon
    if not value.is_integer():
        raise ValueError("not a whole number")
    return int(value)


def _integral_schema(ge: int | None, le: int | None) -> core_schema.CoreSchema:
    as_int = core_schema.int_schema(ge=ge, le=le, strict=True)
    # a float: whole, then converted exactly and range-checked as an int (a float bound would
    # let 2.0**63 pass an int64 maximum, which rounds to it)
    as_float = core_schema.chain_schema([
        core_schema.float_schema(allow_inf_nan=False, strict=True),
        core_schema.no_info_plain_validator_function(_whole),
        core_schema.int_schema(ge=ge, le=le, strict=True),
    ])
    return core_schema.union_schema([as_int, as_float])


@dataclass(frozen=True)
class Integral:
    """`Annotated[int, Integral(ge, le)]`: an int that also takes a float with a zero fractional
    part (SPEC §3), in [ge, le]. A plain integer is checked in pydantic-core alone (no Python
    call); only a float takes the conversion."""

    ge: int | None = None
    le: int | None = None

    def __get_pydantic_core_schema__(self, _source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        span = f"{'-inf' if self.ge is None else self.ge}..{'+inf' if self.le is None else self.le}"
        return _with_error(_integral_schema(self.ge, self.le), "integer", f"Input should be an integer in {span}")

    def __get_pydantic_json_schema__(self, _schema: Any, _handler: GetJsonSchemaHandler) -> dict[str, Any]:
        json_schema: dict[str, Any] = {"type": "integer"}
        if self.ge is not None:
            json_schema["minimum"] = self.ge
        if self.le is not None:
            json_schema["maximum"] = self.le
        return json_schema


@dataclass(frozen=True)
class Pattern:
    """`Annotated[str, Pattern(pattern, what)]`: a string matching an anchored pattern; the error
    names `what` (never the pattern, which may hold control characters)."""

    pattern: str
    what: str

    def __get_pydantic_core_schema__(self, _source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return _with_error(core_schema.str_schema(pattern=self.pattern, strict=True), "pattern",
                           f"Input should be {self.what}")

    def __get_pydantic_json_schema__(self, _schema: Any, _handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "pattern": self.pattern}


def ce_string(min_length: int = 0, max_length: int | None = None) -> Pattern:
    """A CloudEvents `String` (no control characters, no noncharacters) of bounded length."""
    top = "" if max_length is None else str(max_length)
    return Pattern(f"^{STRING_CHAR}{{{min_length},{top}}}$",
                   f"a CloudEvents String of {min_length}..{top} characters without control characters "
                   "or noncharacters")


def _extension_value() -> core_schema.CoreSchema:
    return _with_error(
        core_schema.nullable_schema(core_schema.union_schema([
            core_schema.bool_schema(strict=True),
            _integral_schema(INTEGER_MIN, INTEGER_MAX),
            core_schema.str_schema(pattern=f"^{STRING_CHAR}*$", strict=True),
        ])),
        "extension_value",
        "Input should be a CloudEvents attribute value: a String without control characters or "
        f"noncharacters, a boolean, or an Integer in {INTEGER_MIN}..{INTEGER_MAX}",
    )


EXTENSION_VALUE_JSON_SCHEMA: Final[dict[str, Any]] = {"anyOf": [
    {"type": "null"},
    {"type": "boolean"},
    {"type": "integer", "minimum": INTEGER_MIN, "maximum": INTEGER_MAX},
    {"type": "string", "pattern": f"^{STRING_CHAR}*$"},
]}
AttributeName = Annotated[str, Pattern(ATTRIBUTE_NAME_PATTERN, "a CloudEvents attribute name (lowercase a-z0-9)")]
ExtensionValue = Annotated[
    str | bool | int | None,
    GetPydanticSchema(lambda _t, _h: _extension_value()),
    WithJsonSchema(EXTENSION_VALUE_JSON_SCHEMA),
]
