"""Framing and message shapes, without sockets."""
from __future__ import annotations

import json
import socket
import struct

import pytest

from memtui import protocol


def test_roundtrip_through_decoder_in_arbitrary_chunks():
    frames = b"".join(protocol.encode_frame({"id": i, "x": "é" * i}) for i in range(5))
    dec = protocol.FrameDecoder(protocol.MAX_REQUEST)
    got = []
    for i in range(len(frames)):  # one byte at a time
        got += dec.feed(frames[i:i + 1])
    assert [protocol.decode_body(b)["id"] for b in got] == [0, 1, 2, 3, 4]
    assert dec.pending == 0


def test_oversized_header_rejected_before_body_arrives():
    dec = protocol.FrameDecoder(protocol.MAX_REQUEST)
    with pytest.raises(protocol.FrameTooLarge) as info:
        dec.feed(struct.pack(">I", 0xFFFFFFFF))
    assert info.value.size == 0xFFFFFFFF and info.value.limit == protocol.MAX_REQUEST
    assert dec.pending == 4  # nothing but the header was ever buffered


@pytest.mark.parametrize("body,needle", [(b"\xff\xfe", "UTF-8"), (b"{nope", "JSON"),
                                         (b"[1,2]", "object"), (b"12", "object")])
def test_bad_bodies_raise_protocol_error(body, needle):
    with pytest.raises(protocol.ProtocolError, match=needle):
        protocol.decode_body(body)


def test_encode_is_strict_json_even_for_nan_and_odd_types():
    frame = protocol.encode_frame({"a": float("nan"), "b": float("inf"), "c": {1, 2}, "d": object})
    body = json.loads(frame[4:])
    assert body["a"] is None and body["b"] is None and sorted(body["c"]) == [1, 2]
    assert isinstance(body["d"], str)


def test_encode_refuses_over_limit():
    with pytest.raises(protocol.FrameTooLarge):
        protocol.encode_frame({"x": "a" * 100}, limit=50)


def test_read_frame_checks_length_before_reading_body():
    a, b = socket.socketpair()
    try:
        a.sendall(struct.pack(">I", protocol.MAX_RESPONSE + 1))
        with pytest.raises(protocol.FrameTooLarge):
            protocol.read_frame(b, protocol.MAX_RESPONSE)
    finally:
        a.close()
        b.close()


def test_shapes():
    assert protocol.request(3, "stats") == {"v": 1, "id": 3, "op": "stats", "args": {}}
    assert protocol.ok(3, 1) == {"id": 3, "ok": True, "result": 1}
    err = protocol.error(3, protocol.BAD_ARGS, "no", retry_after_s=1)
    assert err["error"] == {"code": "bad_args", "message": "no.", "retry_after_s": 1}
    assert protocol.error(1, "x", "gc.collect is rate-limited")["error"]["message"] == \
        "gc.collect is rate-limited."


def test_json_safe_survives_hostile_structures():
    d = {"n": 1}
    d["a"] = d
    d["b"] = d  # two back-references: naive recursion would build 2**depth nodes

    class BadStr:
        def __str__(self):
            raise RuntimeError("no str")

    out = protocol.json_safe({"self": d, "big": 10 ** 5000, "bad": BadStr(), 3: {1, 2},
                              "deep": [[[[[[[[1]]]]]]]], "nan": float("nan")}, max_depth=4)
    assert out["self"] == {"n": 1, "a": "<cycle>", "b": "<cycle>"}
    assert out["big"].startswith("<int of ") and out["bad"] == "<unprintable BadStr>"
    assert sorted(out["3"]) == [1, 2] and out["nan"] is None
    assert "<truncated>" in json.dumps(out["deep"])
    json.dumps(out, allow_nan=False)
    wide = protocol.json_safe(list(range(100000)), max_nodes=50)
    assert len(wide) == 50 and wide[-1] == "<truncated>" and wide[10] == 10
