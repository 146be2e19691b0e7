"""The Feishu long connection's wire format: ``pbbp2.Frame``, a hand-written protobuf codec.

The schema is lark-oapi's ``lark_oapi/ws/pb/pbbp2_pb2.py`` (proto2)::

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1;  required uint64 LogID = 2;
      required int32 service = 3; required int32 method = 4;   // 0 CONTROL, 1 DATA
      repeated Header headers = 5;
      optional string payload_encoding = 6; optional string payload_type = 7;
      optional bytes payload = 8;           optional string LogIDNew = 9;
    }

The four required fields are always written (proto2 parsers reject a frame without them);
the optional ones when not empty. ``decode`` skips unknown fields like protobuf does and raises
``FrameError`` (one clear message) for anything malformed, never another exception. The
runtime does not import lark-oapi; the tests check this codec against its generated class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL, DATA = 0, 1
_U64 = (1 << 64) - 1
_MAX_FRAME = 64 * 1024 * 1024


class FrameError(ValueError):
    """The bytes are not a valid ``pbbp2.Frame``."""


@dataclass
class Frame:
    SeqID: int = 0
    LogID: int = 0
    service: int = 0
    method: int = CONTROL
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload_encoding: str = ""
    payload_type: str = ""
    payload: bytes = b""
    LogIDNew: str = ""

    def header(self, key: str, default: str = "") -> str:
        """The first header named ``key`` (``default`` when absent)."""
        for k, v in self.headers:
            if k == key:
                return v
        return default

    def set_header(self, key: str, value: str) -> None:
        """Replace the header ``key`` (or append it)."""
        self.headers = [(k, v) for k, v in self.headers if k != key] + [(key, value)]


# -- encoding --------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= _U64  # negative int32/int64 are sign-extended to 10 bytes, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _key(number, 2) + _varint(len(data)) + data


def encode(frame: Frame) -> bytes:
    if not 0 <= frame.SeqID <= _U64 or not 0 <= frame.LogID <= _U64:
        raise FrameError("SeqID/LogID out of uint64 range")
    if not -(1 << 31) <= frame.service < 1 << 31 or not -(1 << 31) <= frame.method < 1 << 31:
        raise FrameError("service/method out of int32 range")
    out = [_key(1, 0), _varint(frame.SeqID), _key(2, 0), _varint(frame.LogID),
           _key(3, 0), _varint(frame.service), _key(4, 0), _varint(frame.method)]
    for k, v in frame.headers:
        out.append(_bytes_field(5, _bytes_field(1, k.encode()) + _bytes_field(2, v.encode())))
    for number, text in ((6, frame.payload_encoding), (7, frame.payload_type)):
        if text:
            out.append(_bytes_field(number, text.encode()))
    if frame.payload:
        out.append(_bytes_field(8, bytes(frame.payload)))
    if frame.LogIDNew:
        out.append(_bytes_field(9, frame.LogIDNew.encode()))
    return b"".join(out)


# -- decoding --------------------------------------------------------------------------------
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FrameError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise FrameError("varint too long")


def _fields(buf: bytes):
    """Yield (number, wire type, value) — value an int for varints, else bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FrameError("field number 0")
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise FrameError("truncated fixed-width field")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise FrameError(f"field {number}: length {size} past the end")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise FrameError(f"unsupported wire type {wire}")
        yield number, wire, value


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"{what} is not UTF-8") from exc


def _header(buf: bytes) -> tuple[str, str]:
    key = value = None
    for number, wire, raw in _fields(buf):
        if number in (1, 2):
            if wire != 2:
                raise FrameError("header key/value has the wrong wire type")
            if number == 1:
                key = _text(raw, "header key")
            else:
                value = _text(raw, "header value")
    if key is None or value is None:
        raise FrameError("header without key or value")
    return key, value


_VARINTS = {1: "SeqID", 2: "LogID", 3: "service", 4: "method"}
_STRINGS = {6: "payload_encoding", 7: "payload_type", 9: "LogIDNew"}


def decode(data: bytes) -> Frame:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FrameError(f"a frame is bytes, not {type(data).__name__}")
    buf = bytes(data)
    if len(buf) > _MAX_FRAME:
        raise FrameError("frame too large")
    frame = Frame()
    required = set(_VARINTS)
    for number, wire, value in _fields(buf):
        if number in _VARINTS:
            if wire != 0:
                raise FrameError(f"{_VARINTS[number]} has the wrong wire type")
            required.discard(number)
            setattr(frame, _VARINTS[number], value if number <= 2 else _int32(value))
        elif number in _STRINGS or number in (5, 8):
            if wire != 2:
                raise FrameError(f"field {number} has the wrong wire type")
            if number == 5:
                frame.headers.append(_header(value))
            elif number == 8:
                frame.payload = value
            else:
                setattr(frame, _STRINGS[number], _text(value, _STRINGS[number]))
    if required:
        missing = ", ".join(_VARINTS[n] for n in sorted(required))
        raise FrameError(f"required field missing: {missing}")
    return frame
