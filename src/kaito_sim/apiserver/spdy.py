"""SPDY/3.1 framing, which `kubectl port-forward` speaks (directly or tunnelled in WebSocket messages).

The frames are those of the SPDY/3 draft as moby/spdystream (client-go's SPDY stack) reads and writes them: a
control frame is `1 | version(15) | type(16) | flags(8) | length(24)` then its fields; a data frame is
`0 | stream id(31) | flags(8) | length(24)` then its bytes. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a
count and length-prefixed name/value pairs, zlib-compressed with the SPDY/3 dictionary, one compression context
per direction for the whole connection (each block ends on a sync flush). spdystream does no flow control: it
neither sends nor obeys WINDOW_UPDATE, so neither does this side. `Framer` holds one connection's two contexts
and the bytes of a frame not yet complete; it does no I/O.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_LENGTH = (1 << 24) - 1
# RST_STREAM status codes.
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9

# fmt: off
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
)
# fmt: on
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    """The SPDY/3 header dictionary: the draft's words, each behind its 32-bit length, then a tail without lengths."""
    words = b"".join(struct.pack(">I", len(word)) + word.encode() for word in _DICTIONARY_WORDS)
    return words + _DICTIONARY_TAIL.encode()


DICTIONARY = _dictionary()
Headers = dict[str, str]  # lower-case names; several values of one name are joined by NUL, as on the wire


class SpdyError(Exception):
    """The peer sent something that is not SPDY/3.1: the connection cannot go on."""


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False
    associated_to: int = 0
    priority: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = Data | SynStream | SynReply | HeadersFrame | RstStream | Ping | GoAway | Settings | WindowUpdate


def encode_block(headers: Headers) -> bytes:
    """An uncompressed header block."""
    parts = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        parts += [struct.pack(">I", len(raw_name)), raw_name, struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(parts)


def decode_block(block: bytes) -> Headers:
    """An uncompressed header block's pairs; SpdyError when it is cut short."""
    try:
        (count,), at = struct.unpack_from(">I", block), 4
        headers: Headers = {}
        for _ in range(count):
            fields = []
            for _part in ("name", "value"):
                (size,) = struct.unpack_from(">I", block, at)
                if at + 4 + size > len(block):
                    raise SpdyError("header block shorter than its lengths say")
                fields.append(block[at + 4 : at + 4 + size].decode("utf-8", "replace"))
                at += 4 + size
            headers[fields[0].lower()] = fields[1]
        return headers
    except struct.error as exc:
        raise SpdyError(f"truncated header block: {exc}") from exc


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


class Framer:
    """One SPDY connection's frame codec: `feed` takes bytes as they arrive, `encode` makes the bytes to send."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames `data` completes, in order; what is left of a frame waits for the next call."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, flags_length = struct.unpack_from(">II", self._buffer)
            length = flags_length & MAX_LENGTH
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            flags = flags_length >> 24
            if first & 0x80000000:
                frame = self._control_frame(first, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            return decode_block(self._inflate.decompress(block))
        except zlib.error as exc:
            raise SpdyError(f"bad compressed header block: {exc}") from exc

    def _control_frame(self, first: int, flags: int, payload: bytes) -> Frame | None:
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        try:
            if kind == SYN_STREAM:
                stream_id, associated, priority = struct.unpack_from(">IIB", payload)
                headers = self._headers(payload[10:])
                return SynStream(stream_id & 0x7FFFFFFF, headers, fin, associated & 0x7FFFFFFF, priority >> 5)
            if kind in (SYN_REPLY, HEADERS):
                (stream_id,) = struct.unpack_from(">I", payload)
                cls = SynReply if kind == SYN_REPLY else HeadersFrame
                return cls(stream_id & 0x7FFFFFFF, self._headers(payload[4:]), fin)
            if kind == RST_STREAM:
                stream_id, status = struct.unpack_from(">II", payload)
                return RstStream(stream_id & 0x7FFFFFFF, status)
            if kind == PING:
                return Ping(struct.unpack_from(">I", payload)[0])
            if kind == GOAWAY:
                last, status = struct.unpack_from(">II", payload)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", payload)
                pairs = [struct.unpack_from(">II", payload, 4 + 8 * i) for i in range(count)]
                return Settings(tuple((fid >> 24, fid & 0xFFFFFF, value) for fid, value in pairs))
            if kind == WINDOW_UPDATE:
                stream_id, delta = struct.unpack_from(">II", payload)
                return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as exc:
            raise SpdyError(f"truncated control frame of type {kind}: {exc}") from exc
        return None  # unknown control frame types are ignored, as the draft asks

    def _compressed(self, headers: Headers) -> bytes:
        return self._deflate.compress(encode_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        """The frame's bytes; header blocks go through this connection's compression context, so frames must be
        sent in the order they are encoded."""
        if isinstance(frame, Data):
            if len(frame.data) > MAX_LENGTH:
                raise ValueError("a data frame carries at most 16 MiB")
            flags = FLAG_FIN if frame.fin else 0
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (flags << 24) | len(frame.data)) + frame.data
        fin = FLAG_FIN if getattr(frame, "fin", False) else 0
        if isinstance(frame, SynStream):
            head = struct.pack(">IIBB", frame.stream_id, frame.associated_to, frame.priority << 5, 0)
            return _control(SYN_STREAM, fin, head + self._compressed(frame.headers))
        if isinstance(frame, SynReply | HeadersFrame):
            kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            return _control(kind, fin, struct.pack(">I", frame.stream_id) + self._compressed(frame.headers))
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        if isinstance(frame, Settings):
            pairs = b"".join(struct.pack(">II", (f << 24) | i, v) for f, i, v in frame.entries)
            return _control(SETTINGS, 0, struct.pack(">I", len(frame.entries)) + pairs)
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
