"""Tests for wssync.sansio.frames: values, close payloads, masking, serialization."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading

import pytest

from wssync.exceptions import ProtocolError
from wssync.sansio import frames
from wssync.sansio.frames import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    Close,
    CloseCode,
    Frame,
    Opcode,
    apply_mask,
    mask_in_place,
    serialize_frame,
    serialize_payload,
)


def naive_mask(data: bytes, key: bytes) -> bytes:
    """The textbook definition of RFC 6455 §5.3, byte by byte."""
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(data))


# --- values ------------------------------------------------------------------


def test_opcode_values() -> None:
    assert [int(op) for op in Opcode] == [0, 1, 2, 8, 9, 10]
    assert {Opcode.CONT, Opcode.TEXT, Opcode.BINARY} == DATA_OPCODES
    assert {Opcode.CLOSE, Opcode.PING, Opcode.PONG} == CONTROL_OPCODES


def test_close_code_values() -> None:
    assert int(CloseCode.NORMAL_CLOSURE) == 1000
    assert int(CloseCode.NO_STATUS_RCVD) == 1005
    assert int(CloseCode.ABNORMAL_CLOSURE) == 1006
    assert int(CloseCode.INVALID_DATA) == 1007
    assert int(CloseCode.MESSAGE_TOO_BIG) == 1009
    assert int(CloseCode.TLS_HANDSHAKE) == 1015
    assert sorted(int(code) for code in CloseCode) == [
        *range(1000, 1004),
        *range(1005, 1016),
    ]


def test_frame_defaults_and_replace() -> None:
    frame = Frame(Opcode.TEXT, b"hi")
    assert frame == (Opcode.TEXT, b"hi", True, False, False, False)
    assert frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    compressed = frame._replace(rsv1=True, data=b"xx")
    assert compressed == Frame(Opcode.TEXT, b"xx", True, True)
    assert frame.data == b"hi"


# --- Close ---------------------------------------------------------------------


def test_close_parse_empty_is_1005() -> None:
    close = Close.parse(b"")
    assert close == Close(1005, "")
    assert type(close.code) is int


def test_close_parse_code_and_reason() -> None:
    assert Close.parse(b"\x03\xe8") == Close(1000, "")
    assert Close.parse(b"\x03\xe9bye") == Close(1001, "bye")
    assert Close.parse(b"\x0f\xa0" + "é€".encode()) == Close(4000, "é€")


def test_close_parse_one_byte_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Close.parse(b"\x03")


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011]
VALID_CODES += [1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
INVALID_CODES += [5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_parse_valid_codes(code: int) -> None:
    assert Close.parse(code.to_bytes(2, "big") + b"ok") == Close(code, "ok")


@pytest.mark.parametrize("code", INVALID_CODES)
def test_close_parse_invalid_codes(code: int) -> None:
    with pytest.raises(ProtocolError):
        Close.parse(code.to_bytes(2, "big"))


@pytest.mark.parametrize(
    "reason",
    [b"\xff", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", b"\xc3"],
)
def test_close_parse_invalid_utf8_reason(reason: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        Close.parse(b"\x03\xe8" + reason)


def test_close_serialize() -> None:
    assert Close(1000, "").serialize() == b"\x03\xe8"
    assert Close(1001, "bye").serialize() == b"\x03\xe9bye"
    assert Close(1005, "").serialize() == b""
    assert Close(CloseCode.GOING_AWAY, "é").serialize() == b"\x03\xe9\xc3\xa9"


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_round_trip(code: int) -> None:
    close = Close(code, "reason ☃")
    assert Close.parse(close.serialize()) == close


@pytest.mark.parametrize("code", [1004, 1006, 1015, 999, 2000, 5000])
def test_close_serialize_refuses_invalid_codes(code: int) -> None:
    with pytest.raises(ProtocolError):
        Close(code, "").serialize()


def test_close_serialize_1005_with_reason() -> None:
    with pytest.raises(ProtocolError):
        Close(1005, "no code but a reason").serialize()


def test_close_serialize_reason_length_limit() -> None:
    assert len(Close(1000, "x" * 123).serialize()) == 125
    with pytest.raises(ProtocolError):
        Close(1000, "x" * 124).serialize()
    # The limit is in bytes, not characters.
    with pytest.raises(ProtocolError):
        Close(1000, "é" * 62).serialize()


def test_close_str() -> None:
    assert str(Close(1000, "bye")) == "1000 bye"
    assert str(Close(1005, "")) == "1005"


def test_close_is_frozen() -> None:
    close = Close(1000, "")
    with pytest.raises(AttributeError):
        close.code = 1001  # type: ignore[misc]


# --- apply_mask ----------------------------------------------------------------


def test_apply_mask_rfc_example() -> None:
    # RFC 6455 §5.7: a masked "Hello".
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    masked = bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert apply_mask(masked, key) == b"Hello"
    assert apply_mask(b"Hello", key) == masked


SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 125, 126, 383, 384, 385, 386, 4095, 4096, 4097]
SIZES += [16383, 16384, 16385, 16388, 65536 + 3, 3 * 16384 + 2]


@pytest.mark.parametrize("size", SIZES)
def test_apply_mask_matches_the_definition(size: int) -> None:
    data = os.urandom(size)
    key = os.urandom(4)
    expected = naive_mask(data, key)
    assert apply_mask(data, key) == expected
    assert apply_mask(bytearray(data), key) == expected
    assert apply_mask(memoryview(data), key) == expected
    assert apply_mask(expected, key) == data


def test_apply_mask_on_a_memoryview_slice() -> None:
    data = os.urandom(40000)
    key = b"\x01\x02\x03\x04"
    view = memoryview(data)[5:39999]
    assert apply_mask(view, key) == naive_mask(data[5:39999], key)


def test_apply_mask_preserves_leading_zero_bytes() -> None:
    # An int drops leading zeros: the length must come from the data.
    key = b"\x00\x00\x00\x00"
    assert apply_mask(b"\x00\x00\x00a", key) == b"\x00\x00\x00a"
    key = b"\xff\xff\xff\xff"
    assert apply_mask(b"\xff\xff\xff\xff\xff", key) == b"\x00" * 5


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 256, 257, 4097])
@pytest.mark.parametrize("start", [0, 1, 3, 6])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5])
def test_mask_in_place_from_any_start_and_offset(
    size: int, start: int, offset: int
) -> None:
    # A payload masked part by part: each part starts at some phase of the key.
    data = os.urandom(start + size)
    key = os.urandom(4)
    buffer = bytearray(data)
    mask_in_place(buffer, key, start, offset)
    rotated = key[offset % 4 :] + key[: offset % 4]
    assert bytes(buffer) == data[:start] + naive_mask(data[start:], rotated)


def test_apply_mask_returns_bytes() -> None:
    assert type(apply_mask(bytearray(b"abc"), b"abcd")) is bytes
    assert type(apply_mask(b"", b"abcd")) is bytes
    assert type(apply_mask(os.urandom(20000), b"abcd")) is bytes


# --- serialize_frame -------------------------------------------------------------


def joined(chunks: list[bytes]) -> bytes:
    return b"".join(chunks)


def test_serialize_rfc_examples() -> None:
    # RFC 6455 §5.7.
    hello = Frame(Opcode.TEXT, b"Hello")
    assert joined(serialize_frame(hello, mask=False)) == b"\x81\x05Hello"
    assert joined(
        serialize_frame(Frame(Opcode.TEXT, b"Hel", fin=False), mask=False)
    ) == (b"\x01\x03Hel")
    assert (
        joined(serialize_frame(Frame(Opcode.CONT, b"lo"), mask=False)) == b"\x80\x02lo"
    )
    assert joined(serialize_frame(Frame(Opcode.PING, b"Hello"), mask=False)) == (
        b"\x89\x05Hello"
    )
    data = os.urandom(256)
    assert joined(serialize_frame(Frame(Opcode.BINARY, data), mask=False)) == (
        b"\x82\x7e\x01\x00" + data
    )
    data = os.urandom(65536)
    assert joined(serialize_frame(Frame(Opcode.BINARY, data), mask=False)) == (
        b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + data
    )


def test_serialize_masked_rfc_example(monkeypatch: pytest.MonkeyPatch) -> None:
    # RFC 6455 §5.7: a masked "Hello" text frame and a masked "Hello" pong.
    monkeypatch.setattr(frames, "masking_key", lambda: bytes([0x37, 0xFA, 0x21, 0x3D]))
    masked_hello = bytes([0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert serialize_frame(Frame(Opcode.TEXT, b"Hello"), mask=True) == [
        b"\x81\x85" + masked_hello
    ]
    assert serialize_frame(Frame(Opcode.PONG, b"Hello"), mask=True) == [
        b"\x8a\x85" + masked_hello
    ]


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_serialize_length_encodings(size: int, header: bytes) -> None:
    data = bytes(size)
    assert joined(serialize_frame(Frame(Opcode.BINARY, data), mask=False)) == (
        header + data
    )
    masked = joined(serialize_frame(Frame(Opcode.BINARY, data), mask=True))
    assert masked[0] == header[0]
    assert masked[1] == header[1] | 0x80
    assert masked[2 : len(header)] == header[2:]
    key = masked[len(header) : len(header) + 4]
    assert apply_mask(masked[len(header) + 4 :], key) == data


@pytest.mark.parametrize(
    ("fields", "first"),
    [
        ({"fin": False}, 0x02),
        ({"rsv1": True}, 0xC2),
        ({"rsv2": True}, 0xA2),
        ({"rsv3": True}, 0x92),
        ({"fin": False, "rsv1": True, "rsv2": True, "rsv3": True}, 0x72),
    ],
)
def test_serialize_flags(fields: dict[str, bool], first: int) -> None:
    frame = Frame(Opcode.BINARY, b"x")._replace(**fields)  # type: ignore[arg-type]
    assert serialize_frame(frame, mask=False)[0][0] == first


def test_serialize_with_a_given_key() -> None:
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    assert serialize_frame(Frame(Opcode.TEXT, b"Hello"), mask=True, key=key) == [
        b"\x81\x85" + key + bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58])
    ]
    # The key is only for masked frames.
    assert serialize_frame(Frame(Opcode.TEXT, b"Hello"), mask=False, key=key) == [
        b"\x81\x05Hello"
    ]


def test_serialize_uses_fresh_keys() -> None:
    frame = Frame(Opcode.BINARY, b"same payload")
    keys = {serialize_frame(frame, mask=True)[0][2:6] for _ in range(20)}
    assert len(keys) > 1


def test_masking_keys_are_handed_out_once() -> None:
    # More keys than one refill of the pool, from several threads at once.
    drawn: list[list[bytes]] = [[] for _ in range(4)]

    def draw(into: list[bytes]) -> None:
        for _ in range(500):
            into.append(frames.masking_key())

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    keys = [key for into in drawn for key in into]
    assert len(keys) == 2000 and all(len(key) == 4 for key in keys)
    # 2,000 random 32-bit keys: a collision has a probability of 5e-4. A
    # pool that handed its keys out more than once would repeat dozens.
    assert len(set(keys)) >= 1998


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
def test_forked_child_draws_its_own_masking_keys() -> None:
    # The pool is filled in the parent before the fork: the child must not
    # hand out the keys the parent will.
    code = (
        "import os\n"
        "from wssync.sansio import frames\n"
        "frames.masking_key()\n"
        "read, write = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(write, frames.masking_key())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "child = os.read(read, 4)\n"
        "print(child.hex(), frames.masking_key().hex())\n"
    )
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=pathlib.Path(__file__).parents[2],
        )
        assert result.returncode == 0, result.stderr
        child, parent = result.stdout.split()
        assert child != parent


def test_serialize_small_payload_in_one_chunk() -> None:
    data = os.urandom(4095)
    chunks = serialize_frame(Frame(Opcode.BINARY, data), mask=False)
    assert len(chunks) == 1


def test_serialize_large_unmasked_payload_is_not_copied() -> None:
    data = os.urandom(4096)
    chunks = serialize_frame(Frame(Opcode.BINARY, data), mask=False)
    assert len(chunks) == 2
    assert chunks[0] == b"\x82\x7e\x10\x00"
    assert chunks[1] is data


def test_serialize_large_masked_payload_in_one_chunk() -> None:
    data = os.urandom(100_000)
    chunks = serialize_frame(Frame(Opcode.BINARY, data), mask=True)
    assert len(chunks) == 1
    header = chunks[0][:10]
    assert header == b"\x82\xff" + (100_000).to_bytes(8, "big")
    key = chunks[0][10:14]
    assert apply_mask(chunks[0][14:], key) == data


@pytest.mark.parametrize("size", [0, 5, 125, 126, 384, 385, 4095, 4096, 65536])
@pytest.mark.parametrize("fin", [True, False])
@pytest.mark.parametrize("key", [None, bytes([0x37, 0xFA, 0x21, 0x3D])])
def test_serialize_payload_matches_serialize_frame(
    size: int, fin: bool, key: bytes | None
) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = Frame(Opcode.BINARY, data, fin=fin)
    first = 0x82 if fin else 0x02
    assert joined(serialize_payload(first, data, key)) == joined(
        serialize_frame(frame, mask=key is not None, key=key)
    )
