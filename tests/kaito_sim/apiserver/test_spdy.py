"""SPDY/3.1 framing: round trips, header blocks compressed by kubectl itself, frames split across reads."""

from __future__ import annotations

import struct
import zlib

import pytest

from kaito_sim.apiserver import spdy

# The first frames kubectl 1.32 (spdystream, Go's zlib) sent on a port-forward connection, as captured: the error
# stream's SYN_STREAM, its FIN, then the data stream's SYN_STREAM, whose header block continues the same
# compression context.
KUBECTL_SYN_ERROR = bytes.fromhex(
    "800300010000003f0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc6a6a6c640a"
    "2a85388b20f198094adf8c0600000000ffff"
)
KUBECTL_FIN_ERROR = bytes.fromhex("0000000101000000")
KUBECTL_SYN_DATA = bytes.fromhex("800300010000001a0000000300000000000082ea264219aa05a0b22a11000000ffff")
FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": "error", "port": "5000", "requestid": "0"}),
    spdy.SynReply(1),
    spdy.SynStream(3, {"streamtype": "data", "port": "5000", "requestid": "0"}, fin=True, priority=3),
    spdy.HeadersFrame(3, {"x-multi": "a\x00b"}, fin=True),
    spdy.Data(3, b"GET / HTTP/1.1\r\n\r\n"),
    spdy.Data(3, fin=True),
    spdy.RstStream(3, spdy.CANCEL),
    spdy.Ping(7),
    spdy.Settings(((0, 4, 1000), (1, 7, 65536))),
    spdy.WindowUpdate(5, 4096),
    spdy.GoAway(9, 0),
]


def test_the_header_dictionary_is_spdy3s() -> None:
    # Both ends prime zlib with the same bytes: a zlib stream names its dictionary by the Adler-32 (DICTID) that
    # follows its 2-byte header, here after the SYN_STREAM's 8-byte frame header and 10 bytes of stream fields.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY).to_bytes(4, "big") == KUBECTL_SYN_ERROR[20:24]


def test_header_blocks_kubectl_compressed_decode() -> None:
    framer = spdy.Framer()
    frames = framer.feed(KUBECTL_SYN_ERROR + KUBECTL_FIN_ERROR + KUBECTL_SYN_DATA)
    assert frames == [
        spdy.SynStream(1, {"streamtype": "error", "port": "53255", "requestid": "0"}),
        spdy.Data(1, fin=True),
        spdy.SynStream(3, {"port": "53255", "requestid": "0", "streamtype": "data"}),
    ]


def test_every_frame_type_round_trips_through_one_compression_context() -> None:
    sender, receiver = spdy.Framer(), spdy.Framer()
    wire = b"".join(sender.encode(frame) for frame in FRAMES)
    assert receiver.feed(wire) == FRAMES


def test_a_frame_split_across_reads_comes_out_once_it_is_complete() -> None:
    sender, receiver = spdy.Framer(), spdy.Framer()
    wire = b"".join(sender.encode(frame) for frame in FRAMES[:5])
    seen: list[spdy.Frame] = []
    for at in range(len(wire)):
        seen += receiver.feed(wire[at : at + 1])
        assert len(seen) <= 5
    assert seen == FRAMES[:5]


def test_header_block_layout() -> None:
    block = spdy.encode_block({"Port": "80"})
    assert block == struct.pack(">I", 1) + struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80"
    assert spdy.decode_block(block) == {"port": "80"}
    with pytest.raises(spdy.SpdyError):
        spdy.decode_block(block[:-1])


def test_unknown_control_frames_are_skipped_and_other_versions_refused() -> None:
    unknown = struct.pack(">HHI", 0x8000 | 3, 0x00FF, 2) + b"xx"
    assert spdy.Framer().feed(unknown + spdy.Framer().encode(spdy.Ping(1))) == [spdy.Ping(1)]
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.Framer().feed(struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + b"\x00\x00\x00\x01")
