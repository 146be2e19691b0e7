"""The hand-written pbbp2 codec against lark-oapi's generated ``pbbp2_pb2.Frame`` (the oracle),
in both directions, plus malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark_oapi.ws.pb.pbbp2_pb2 import Frame as PbFrame

from integrations.feishu import frames

u64 = st.integers(0, 2**64 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=40)
headers = st.lists(st.tuples(text, text), max_size=6)


def _ours(seq, log_id, service, method, hs, enc, ptype, payload, new) -> frames.Frame:
    return frames.Frame(seq, log_id, service, method, list(hs), enc, ptype, payload, new)


def _oracle(f: frames.Frame) -> PbFrame:
    pb = PbFrame()
    pb.SeqID, pb.LogID, pb.service, pb.method = f.SeqID, f.LogID, f.service, f.method
    for k, v in f.headers:
        h = pb.headers.add()
        h.key, h.value = k, v
    if f.payload_encoding:
        pb.payload_encoding = f.payload_encoding
    if f.payload_type:
        pb.payload_type = f.payload_type
    if f.payload:
        pb.payload = f.payload
    if f.LogIDNew:
        pb.LogIDNew = f.LogIDNew
    return pb


def _as_tuple(pb: PbFrame) -> tuple:
    return (pb.SeqID, pb.LogID, pb.service, pb.method,
            [(h.key, h.value) for h in pb.headers], pb.payload_encoding, pb.payload_type,
            pb.payload, pb.LogIDNew)


frame_st = st.builds(_ours, u64, u64, i32, i32, headers, text, text, st.binary(max_size=300),
                     text)


@settings(max_examples=300, deadline=None)
@given(frame_st)
def test_our_bytes_parse_in_lark(f):
    pb = PbFrame()
    pb.ParseFromString(frames.encode(f))
    assert _as_tuple(pb) == (f.SeqID, f.LogID, f.service, f.method, f.headers,
                             f.payload_encoding, f.payload_type, f.payload, f.LogIDNew)


@settings(max_examples=300, deadline=None)
@given(frame_st)
def test_lark_bytes_decode_here(f):
    raw = _oracle(f).SerializeToString()
    assert frames.decode(raw) == f
    assert frames.encode(frames.decode(raw)) == raw  # same field order and presence


def test_a_real_ping_frame_from_lark():
    from lark_oapi.ws.client import _new_ping_frame

    got = frames.decode(_new_ping_frame(33554678).SerializeToString())
    assert (got.method, got.service, got.header("type")) == (frames.CONTROL, 33554678, "ping")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_a_frame_error_or_a_frame(raw):
    try:
        frames.decode(raw)
    except frames.FrameError:
        pass


@pytest.mark.parametrize("raw, why", [
    (b"\x08", "truncated varint"),
    (b"\x08\x01\x10\x01\x18\x01", "required field missing: method"),
    (b"\x42\x05ab", "past the end"),
    (b"\x08" + b"\xff" * 11, "varint too long"),
    (b"\x0f", "wire type"),
    (b"\x08\x00\x10\x00\x18\x00\x20\x01\x2a\x02\x0a\x00", "header without key or value"),
    (b"\x08\x00\x10\x00\x18\x00\x20\x01\x4a\x01\xff", "not UTF-8"),
])
def test_malformed_bytes_say_why(raw, why):
    with pytest.raises(frames.FrameError, match=why):
        frames.decode(raw)


def test_unknown_fields_are_skipped_like_protobuf():
    pb = _oracle(frames.Frame(1, 2, 3, 1, [("type", "event")], payload=b"{}"))
    raw = pb.SerializeToString() + b"\x58\x07" + b"\x62\x02hi" + b"\x6d\x00\x00\x00\x00"
    assert frames.decode(raw).payload == b"{}"
