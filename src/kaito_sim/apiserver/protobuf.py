"""Reads `application/vnd.kubernetes.protobuf` request bodies, which kubectl's typed clients send, into JSON objects.

kubectl 1.32 sends `kubectl create configmap|secret|deployment|...` bodies as Kubernetes protobuf, and no protobuf
library is available here. This module is a small wire-format reader plus a table-driven decoder: the envelope
(`k8s\\x00` + `runtime.Unknown`) names the apiVersion and kind, and `protobuf_schemas` gives the field numbers of
that kind's message tree. The result is the object a JSON client would have sent for the same request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.protobuf_schemas import KINDS, MESSAGES, Field

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_WIRE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LENGTH: "length-delimited", FIXED32: "fixed32"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

WireValue = int | bytes


class WireError(ValueError):
    """Bytes that are not valid protobuf, or that do not fit the message table they are read with."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint starting at `pos`, and the position just after it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def to_signed(value: int) -> int:
    """An int32/int64 read as an unsigned varint, back to its signed value (negatives use 10-byte two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _read_fixed(data: bytes, pos: int, width: int) -> tuple[int, int]:
    if pos + width > len(data):
        raise WireError(f"truncated fixed{width * 8} value")
    return int.from_bytes(data[pos : pos + width], "little"), pos + width


def iter_fields(data: bytes) -> Iterator[tuple[int, int, WireValue]]:
    """Yield (field number, wire type, value) for each field on the wire; length-delimited values are bytes."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0 is not allowed")
        value: WireValue
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise WireError(f"field {number}: length {size} runs past the end of the message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (FIXED64, FIXED32):
            value, pos = _read_fixed(data, pos, 8 if wire == FIXED64 else 4)
        else:
            raise WireError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def _expect(field: str, wire: int, value: WireValue, want: int) -> Any:
    if wire != want:
        raise WireError(f"{field}: expected a {_WIRE_NAMES[want]} value, got {_WIRE_NAMES.get(wire, wire)}")
    return value


def _string(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{field}: string is not valid UTF-8") from None


def _scalar_fields(data: bytes) -> dict[int, WireValue]:
    """Last value of each field of a small fixed-shape message (Time, IntOrString, ...)."""
    return {number: value for number, _wire, value in iter_fields(data)}


def _time(data: bytes, where: str, fraction: bool) -> str | None:
    fields = _scalar_fields(data)
    if not fields:
        return None  # Go's zero time: JSON null, which a JSON client leaves out
    seconds, nanos = to_signed(_int(fields.get(1, 0), where)), to_signed(_int(fields.get(2, 0), where))
    try:
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise WireError(f"{where}: time {seconds}s is out of range") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ")


def _int(value: WireValue, where: str) -> int:
    if not isinstance(value, int):
        raise WireError(f"{where}: expected an integer")
    return value


def _bytes(value: WireValue, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise WireError(f"{where}: expected length-delimited bytes")
    return value


def _int_or_string(data: bytes, where: str) -> int | str:
    fields = _scalar_fields(data)
    if _int(fields.get(1, 0), where) == 1:
        return _string(_bytes(fields.get(3, b""), where), where)
    return to_signed(_int(fields.get(2, 0), where))


def _quantity(data: bytes, where: str) -> str:
    return _string(_bytes(_scalar_fields(data).get(1, b"0"), where), where) or "0"


def _fields_v1(data: bytes, where: str) -> Any:
    raw = _bytes(_scalar_fields(data).get(1, b""), where)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise WireError(f"{where}: fieldsV1 is not JSON") from None


def _string_list(data: bytes, where: str) -> list[str]:
    return [_string(_bytes(v, where), where) for number, _w, v in iter_fields(data) if number == 1]


def _special(type_: str, data: bytes, where: str) -> Any:
    """Decode an apimachinery type whose JSON form differs from its message shape."""
    if type_ in ("Time", "MicroTime"):
        return _time(data, where, fraction=type_ == "MicroTime")
    if type_ == "IntOrString":
        return _int_or_string(data, where)
    if type_ == "Quantity":
        return _quantity(data, where)
    if type_ == "FieldsV1":
        return _fields_v1(data, where)
    return _string_list(data, where)


SCALARS = frozenset({"string", "int", "bool", "bytes"})
SPECIALS = frozenset({"Time", "MicroTime", "IntOrString", "Quantity", "FieldsV1", "StringList"})
_ZEROS: dict[str, str | int | bool] = {"string": "", "int": 0, "bool": False, "bytes": "", "Quantity": "0"}


def _zero(type_: str) -> Any:
    """A fresh zero value of `type_`, for a map entry sent without its value."""
    if type_ in _ZEROS:
        return _ZEROS[type_]
    return [] if type_ == "StringList" else {}


def decode_value(type_: str, wire: int, value: WireValue, where: str) -> Any:
    """One non-repeated value of `type_` (a scalar, a special, or a message name); None means 'leave it out'."""
    if type_ in ("int", "bool"):
        number = _expect(where, wire, value, VARINT)
        return to_signed(number) if type_ == "int" else bool(number)
    data: bytes = _expect(where, wire, value, LENGTH)
    if type_ == "string":
        return _string(data, where)
    if type_ == "bytes":
        return base64.b64encode(data).decode("ascii")
    if type_ in SPECIALS:
        return _special(type_, data, where)
    return decode_message(data, type_)


def _repeated(field: Field, wire: int, value: WireValue, where: str) -> list[Any]:
    if field.type == "int" and wire == LENGTH:  # packed encoding: a run of varints
        data, pos, out = _bytes(value, where), 0, []
        while pos < len(data):
            number, pos = read_varint(data, pos)
            out.append(to_signed(number))
        return out
    return [decode_value(field.type, wire, value, where)]


def _map_entry(field: Field, data: bytes, where: str) -> tuple[str, Any]:
    value_type = field.map_value or "string"
    key, item = "", _zero(value_type)
    for number, wire, value in iter_fields(data):
        if number == 1:
            key = _string(_expect(where, wire, value, LENGTH), where)
        elif number == 2:
            item = decode_value(value_type, wire, value, f"{where}[{key}]")
    return key, item


def _set_field(out: dict[str, Any], field: Field, wire: int, value: WireValue, where: str) -> None:
    if field.map_value is not None:
        key, item = _map_entry(field, _expect(where, wire, value, LENGTH), where)
        out.setdefault(field.name, {})[key] = item
    elif field.inline:
        out.update(decode_message(_expect(where, wire, value, LENGTH), field.type))
    elif field.repeated:
        out.setdefault(field.name, []).extend(_repeated(field, wire, value, where))
    else:
        decoded = decode_value(field.type, wire, value, where)
        omit_zero = field.type in SCALARS and not field.keep and decoded == _ZEROS[field.type]
        if decoded is None or omit_zero:
            out.pop(field.name, None)
        else:
            out[field.name] = decoded


def decode_message(data: bytes, message: str) -> dict[str, Any]:
    """Decode `data` as the message named `message` in `protobuf_schemas.MESSAGES`; unknown fields are skipped."""
    table = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, wire, value in iter_fields(data):
        field = table.get(number)
        if field is not None:
            _set_field(out, field, wire, value, f"{message}.{field.name or field.type}")
    return out


def _envelope(data: bytes) -> tuple[str, str, bytes, str]:
    """(apiVersion, kind, raw, contentEncoding) from the `runtime.Unknown` after the magic prefix."""
    api_version = kind = encoding = ""
    raw = b""
    for number, wire, value in iter_fields(data):
        if number == 1:
            type_meta = _scalar_fields(_expect("Unknown.typeMeta", wire, value, LENGTH))
            api_version = _string(_bytes(type_meta.get(1, b""), "TypeMeta.apiVersion"), "TypeMeta.apiVersion")
            kind = _string(_bytes(type_meta.get(2, b""), "TypeMeta.kind"), "TypeMeta.kind")
        elif number == 2:
            raw = _expect("Unknown.raw", wire, value, LENGTH)
        elif number == 3:
            encoding = _string(_expect("Unknown.contentEncoding", wire, value, LENGTH), "Unknown.contentEncoding")
    return api_version, kind, raw, encoding


def decode_k8s_protobuf(data: bytes) -> dict[str, Any]:
    """Decode a Kubernetes protobuf envelope into the JSON object a JSON client would have sent.

    Raises `errors.bad_request` (400) for a missing magic prefix, malformed wire data, or a kind with no table.
    """
    if not data.startswith(MAGIC):
        raise errors.bad_request(f"the {PROTOBUF} body does not start with the Kubernetes protobuf prefix 'k8s\\x00'")
    try:
        api_version, kind, raw, encoding = _envelope(data[len(MAGIC) :])
        if not kind or not api_version:
            raise errors.bad_request(f"the {PROTOBUF} body does not name its apiVersion and kind")
        if encoding:
            raise errors.bad_request(f"the {PROTOBUF} body uses unsupported contentEncoding {encoding!r}")
        message = KINDS.get((api_version, kind))
        if message is None:
            raise errors.bad_request(
                f"this server cannot decode {kind} ({api_version}) from {PROTOBUF}; send application/json instead"
            )
        body = decode_message(raw, message)
    except WireError as exc:
        raise errors.bad_request(f"cannot decode the {PROTOBUF} body: {exc}") from None
    return {"kind": kind, "apiVersion": api_version, **body}
