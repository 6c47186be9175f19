"""Tests for wssync.sansio.http11: bounded, incremental HTTP/1.1 for the handshake."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wssync.exceptions import InvalidMessage
from wssync.sansio import http11
from wssync.sansio.headers import Headers
from wssync.sansio.http11 import (
    MAX_BODY_SIZE,
    MAX_HEAD_SIZE,
    MAX_LINE_LENGTH,
    MAX_NUM_HEADERS,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    parse_request,
    parse_response,
)

# RFC 6455 §1.2, the example handshake.
REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"\r\n"
)
# A masked text frame "Hello" from RFC 6455 §5.7, which may follow the head.
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"


def request_with(*lines: bytes, request_line: bytes = b"GET / HTTP/1.1") -> bytes:
    """Build a request head with a Host header and extra header lines."""
    return b"\r\n".join([request_line, b"Host: example.com", *lines, b"", b""])


def response_with(*lines: bytes, status_line: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """Build a response head with extra header lines."""
    return b"\r\n".join([status_line, *lines, b"", b""])


def feed_request(data: bytes, *, to_the_end: bool = True) -> tuple[Request, int]:
    """Feed a request one byte at a time into a RequestParser and a growing buffer.

    ``to_the_end``: check that the head ends with the data.
    """
    parser = RequestParser()
    buf = bytearray()
    for index in range(len(data)):
        buf += data[index : index + 1]
        result = parser.parse(buf)
        if result is not None:
            if to_the_end:
                assert index == len(data) - 1, "parsed before the end of the head"
            return result
    raise AssertionError("request not parsed")


def feed_response(data: bytes, *, eof: bool = False) -> tuple[Response, int]:
    """Feed a response one byte at a time into a ResponseParser."""
    parser = ResponseParser()
    buf = bytearray()
    for index in range(len(data)):
        buf += data[index : index + 1]
        result = parser.parse(buf)
        if result is not None:
            assert not eof and index == len(data) - 1, "parsed too early"
            return result
    if eof:
        result = parser.parse(buf, eof=True)
        assert result is not None
        return result
    raise AssertionError("response not parsed")


def request_error(data: bytes) -> InvalidMessage:
    """Return the error raised for a request, checking it the same fed bytewise."""
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(data)
    with pytest.raises(InvalidMessage) as bytewise:
        feed_request(data)
    assert bytewise.value.status_code == excinfo.value.status_code
    return excinfo.value


# Requests


def test_parse_request() -> None:
    result = parse_request(REQUEST)
    assert result is not None
    request, consumed = result
    assert consumed == len(REQUEST)
    assert request.method == "GET"
    assert request.path == "/chat"
    assert request.headers["Host"] == "server.example.com"
    assert request.headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert request.headers.get_all("Sec-WebSocket-Protocol") == ["chat, superchat"]
    assert len(request.headers) == 7


def test_parse_request_leaves_following_bytes() -> None:
    result = parse_request(bytearray(REQUEST + FRAME))
    assert result is not None
    assert result[1] == len(REQUEST)


def test_parse_request_every_prefix_is_incomplete() -> None:
    for end in range(len(REQUEST)):
        assert parse_request(REQUEST[:end]) is None


def test_parse_request_one_byte_at_a_time() -> None:
    request, consumed = feed_request(REQUEST)
    assert consumed == len(REQUEST)
    assert request == parse_request(REQUEST + FRAME)[0]  # type: ignore[index]


def test_request_parser_with_big_chunks() -> None:
    parser = RequestParser()
    buf = bytearray(REQUEST[:50])
    assert parser.parse(buf) is None
    buf += REQUEST[50:] + FRAME
    result = parser.parse(buf)
    assert result is not None
    assert result[1] == len(REQUEST)


def test_request_parser_stops_at_the_end_of_the_head() -> None:
    parser = RequestParser()
    buf = bytearray(REQUEST)
    first = parser.parse(buf)
    assert first is not None
    # Frames arriving later aren't parsed as HTTP.
    buf += b"\x00garbage\r\n\r\n"
    assert parser.parse(buf) is first


def test_response_parser_stops_at_the_end_of_the_response() -> None:
    parser = ResponseParser()
    buf = bytearray(RESPONSE)
    first = parser.parse(buf)
    assert first is not None
    buf += FRAME
    assert parser.parse(buf, eof=True) is first


def test_parse_request_ignores_leading_empty_line() -> None:
    # RFC 7230 §3.5: a server SHOULD ignore an empty line before the request.
    result = parse_request(b"\r\n" + REQUEST)
    assert result is not None
    assert result[0].path == "/chat"
    assert result[1] == len(REQUEST) + 2


def test_parse_request_strips_ows_and_keeps_obs_text() -> None:
    result = parse_request(request_with(b"X-A:   spaced\t ", b"X-B:", b"X-C: caf\xe9"))
    assert result is not None
    headers = result[0].headers
    assert headers["X-A"] == "spaced"
    assert headers["X-B"] == ""
    assert headers["X-C"] == "café"


def test_parse_request_accepts_query_and_absolute_targets() -> None:
    result = parse_request(request_with(request_line=b"GET /a/b?c=d&e=%20 HTTP/1.1"))
    assert result is not None
    assert result[0].path == "/a/b?c=d&e=%20"


@pytest.mark.parametrize(
    ("data", "status_code"),
    [
        # Not HTTP at all: 400.
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        (b"SSH-2.0-OpenSSH_9.6\r\n", 400),
        (b" GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        # Another method: 405 (RFC 6455 §4.1: the method MUST be GET).
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", 405),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 405),
        # Another version: 505.
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
    ],
)
def test_parse_request_line_errors(data: bytes, status_code: int) -> None:
    assert request_error(data).status_code == status_code


@pytest.mark.parametrize(
    "line",
    [
        b"No-Colon",
        b"Space : before colon",
        b": empty name",
        b"Bad\x00Name: x",
        b"X: nul\x00in value",
        b"X: bare\rcr",
        b"X: del\x7f",
        b" folded: line",
        b"\tfolded",
    ],
)
def test_parse_request_header_errors(line: bytes) -> None:
    assert request_error(request_with(line)).status_code == 400


def test_parse_request_rejects_obs_fold() -> None:
    # RFC 7230 §3.2.4: a server MUST reject obs-fold with 400.
    assert request_error(request_with(b"X: a", b" b")).status_code == 400


def test_parse_request_rejects_bare_lf() -> None:
    assert request_error(b"GET / HTTP/1.1\nHost: x\n\n").status_code == 400
    assert request_error(b"GET / HTTP/1.1\r\nHost: x\n\r\n").status_code == 400
    assert request_error(b"\n").status_code == 400


def test_parse_request_rejects_bare_cr_at_once() -> None:
    with pytest.raises(InvalidMessage):
        parse_request(b"\rX")


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # RFC 7230 §5.4: Host is required
        request_with(b"Host: other.example.com"),  # ... and only one
        request_with(b"Content-Length: 5") + b"hello",
        request_with(b"Content-Length: 1, 2"),
        request_with(b"Content-Length: -1"),
        request_with(b"Content-Length: 0x10"),
        request_with(b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
    ],
)
def test_parse_request_semantic_errors(data: bytes) -> None:
    assert request_error(data).status_code == 400


def test_parse_request_accepts_empty_content_length() -> None:
    assert parse_request(request_with(b"Content-Length: 0")) is not None
    assert parse_request(request_with(b"Content-Length: 0", b"content-length: 0"))


def test_early_rejection_of_garbage() -> None:
    # A TLS ClientHello on a plain port is rejected at its first byte.
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(b"\x16")
    assert excinfo.value.status_code == 400


def test_early_rejection_of_other_methods() -> None:
    assert parse_request(b"POS") is None
    assert parse_request(b"GE") is None
    assert parse_request(b"GET") is None
    assert parse_request(b"GET ") is None
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(b"POST ")
    assert excinfo.value.status_code == 405
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(b"GETX ")
    assert excinfo.value.status_code == 405
    # A method longer than any we could accept, before its end is seen.
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(b"A" * 32)
    assert excinfo.value.status_code == 405


# Request limits


def test_request_line_at_limit() -> None:
    target = b"/" + b"a" * (MAX_LINE_LENGTH - len(b"GET / HTTP/1.1"))
    request_line = b"GET " + target + b" HTTP/1.1"
    assert len(request_line) == MAX_LINE_LENGTH
    result = parse_request(request_with(request_line=request_line))
    assert result is not None
    assert result[0].path == target.decode()


def test_request_line_over_limit() -> None:
    target = b"/" + b"a" * (MAX_LINE_LENGTH - len(b"GET / HTTP/1.1") + 1)
    data = request_with(request_line=b"GET " + target + b" HTTP/1.1")
    # RFC 7231 §6.5.12: 414 URI Too Long.
    assert request_error(data).status_code == 414


def test_request_line_over_limit_detected_before_its_end() -> None:
    data = b"GET /" + b"a" * 100_000
    # The line can still end with CRLF at MAX_LINE_LENGTH + 2 bytes...
    assert parse_request(data[:MAX_LINE_LENGTH] + b"\r") is None
    # ... but one byte more than that shows it's too long.
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(data[: MAX_LINE_LENGTH + 1])
    assert excinfo.value.status_code == 414
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(data)
    assert excinfo.value.status_code == 414


def test_request_line_over_limit_bytewise_fails_at_first_sign() -> None:
    parser = RequestParser()
    buf = bytearray(b"GET /")
    while len(buf) <= MAX_LINE_LENGTH:
        assert parser.parse(buf) is None
        buf += b"a"
    with pytest.raises(InvalidMessage) as excinfo:
        parser.parse(buf)
    assert excinfo.value.status_code == 414
    assert len(buf) == MAX_LINE_LENGTH + 1


def test_header_line_at_limit() -> None:
    line = b"X-Big: " + b"v" * (MAX_LINE_LENGTH - len(b"X-Big: "))
    assert len(line) == MAX_LINE_LENGTH
    result = parse_request(request_with(line))
    assert result is not None
    assert len(result[0].headers["X-Big"]) == MAX_LINE_LENGTH - len(b"X-Big: ")


def test_header_line_over_limit() -> None:
    line = b"X-Big: " + b"v" * (MAX_LINE_LENGTH - len(b"X-Big: ") + 1)
    assert request_error(request_with(line)).status_code == 431


def test_header_line_over_limit_detected_before_its_end() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: "
    data = head + b"c" * 100_000
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(data[: len(head) - len(b"Cookie: ") + MAX_LINE_LENGTH + 2])
    assert excinfo.value.status_code == 431


def test_header_count_at_limit() -> None:
    lines = [b"X-%d: v" % index for index in range(MAX_NUM_HEADERS - 1)]
    result = parse_request(request_with(*lines))
    assert result is not None
    assert len(result[0].headers) == MAX_NUM_HEADERS


def test_header_count_over_limit() -> None:
    lines = [b"X-%d: v" % index for index in range(MAX_NUM_HEADERS)]
    assert request_error(request_with(*lines)).status_code == 431


def test_header_count_over_limit_detected_when_next_field_starts() -> None:
    lines = [b"X-%d: v" % index for index in range(MAX_NUM_HEADERS - 1)]
    head = request_with(*lines)[:-2]  # all fields, without the empty line
    assert parse_request(head) is None
    assert parse_request(head + b"\r") is None
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(head + b"X")
    assert excinfo.value.status_code == 431


def test_head_size_at_limit() -> None:
    # Fill the head with 8 KiB lines up to exactly MAX_HEAD_SIZE bytes.
    base = len(request_with())
    lines = []
    remaining = MAX_HEAD_SIZE - base
    index = 0
    while remaining:
        size = min(MAX_LINE_LENGTH, remaining - 2)
        name = b"X-%03d: " % index
        lines.append(name + b"v" * (size - len(name)))
        remaining -= size + 2
        index += 1
    data = request_with(*lines)
    assert len(data) == MAX_HEAD_SIZE
    result = parse_request(data)
    assert result is not None
    assert result[1] == MAX_HEAD_SIZE


def test_head_size_over_limit() -> None:
    lines = [b"X-%03d: " % index + b"v" * 4000 for index in range(17)]
    data = request_with(*lines)
    assert len(data) > MAX_HEAD_SIZE
    assert request_error(data).status_code == 431


def test_head_size_over_limit_detected_before_its_end() -> None:
    lines = [b"X-%03d: " % index + b"v" * 4000 for index in range(17)]
    data = request_with(*lines)[: MAX_HEAD_SIZE + 1]
    assert not data.endswith(b"\r\n\r\n")
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(data)
    assert excinfo.value.status_code == 431


def test_leading_empty_lines_count_toward_head_size() -> None:
    with pytest.raises(InvalidMessage) as excinfo:
        parse_request(b"\r\n" * (MAX_HEAD_SIZE // 2 + 1))
    assert excinfo.value.status_code == 431


# Responses


def test_parse_response() -> None:
    result = parse_response(RESPONSE + FRAME)
    assert result is not None
    response, consumed = result
    assert consumed == len(RESPONSE)
    assert response.status_code == 101
    assert response.reason_phrase == "Switching Protocols"
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert response.body == b""


def test_parse_response_one_byte_at_a_time() -> None:
    response, consumed = feed_response(RESPONSE)
    assert consumed == len(RESPONSE)
    assert response.status_code == 101


def test_parse_response_every_prefix_is_incomplete() -> None:
    for end in range(len(RESPONSE)):
        assert parse_response(RESPONSE[:end]) is None


def test_parse_response_101_ignores_content_length() -> None:
    data = response_with(b"Content-Length: 5", status_line=b"HTTP/1.1 101 OK")
    result = parse_response(data + FRAME)
    assert result is not None
    assert result[0].body == b""
    assert result[1] == len(data)


def test_parse_response_without_reason_phrase() -> None:
    for status_line in (b"HTTP/1.1 101", b"HTTP/1.1 101 "):
        result = parse_response(response_with(status_line=status_line))
        assert result is not None
        assert result[0].status_code == 101
        assert result[0].reason_phrase == ""


def test_parse_response_accepts_http_1_0() -> None:
    data = response_with(b"Content-Length: 2", status_line=b"HTTP/1.0 403 Forbidden")
    result = parse_response(data + b"no")
    assert result is not None
    assert result[0].status_code == 403
    assert result[0].body == b"no"


def test_parse_response_skips_interim_responses() -> None:
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    )
    result = parse_response(interim + RESPONSE + FRAME)
    assert result is not None
    assert result[0].status_code == 101
    assert "Link" not in result[0].headers
    assert result[1] == len(interim) + len(RESPONSE)
    response, consumed = feed_response(interim + RESPONSE)
    assert response.status_code == 101
    assert consumed == len(interim) + len(RESPONSE)


def test_interim_responses_share_the_head_size_limit() -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    data = interim * (MAX_HEAD_SIZE // len(interim) + 1)
    with pytest.raises(InvalidMessage):
        parse_response(data)


def test_parse_response_unfolds_obs_fold() -> None:
    # RFC 7230 §3.2.4: a user agent MUST replace obs-fold with SP.
    data = response_with(
        b"X-A: one", b"  two", b"\tthree", status_line=b"HTTP/1.1 101 OK"
    )
    result = parse_response(data)
    assert result is not None
    assert result[0].headers["X-A"] == "one two three"


def test_parse_response_content_length_body() -> None:
    data = response_with(b"Content-Length: 11") + b"hello world"
    assert parse_response(data[:-1]) is None
    result = parse_response(data + b"extra")
    assert result is not None
    assert result[0].body == b"hello world"
    assert result[1] == len(data)
    response, consumed = feed_response(data)
    assert response.body == b"hello world"
    assert consumed == len(data)


def test_parse_response_chunked_body() -> None:
    head = response_with(
        b"Transfer-Encoding: chunked", status_line=b"HTTP/1.1 404 Not Found"
    )
    body = (
        b"5;name=value\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n"
        b"0\r\nX-T: 1\r\n\r\n"
    )
    result = parse_response(head + body + b"extra")
    assert result is not None
    assert result[0].body == b"hello world0123456789"
    assert result[1] == len(head + body)
    for end in range(len(head + body)):
        assert parse_response((head + body)[:end]) is None
    response, consumed = feed_response(head + body)
    assert response.body == b"hello world0123456789"
    assert consumed == len(head + body)


def test_parse_response_transfer_encoding_overrides_content_length() -> None:
    head = response_with(b"Content-Length: 100", b"Transfer-Encoding: gzip, chunked")
    result = parse_response(head + b"2\r\nok\r\n0\r\n\r\n")
    assert result is not None
    assert result[0].body == b"ok"


@pytest.mark.parametrize(
    "body",
    [
        b"x\r\n",
        b"-1\r\n",
        b"\r\n",
        b"0x5\r\nhello\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\nhello\r\n",
        b"11111111111111111\r\n",
    ],
)
def test_parse_response_invalid_chunks(body: bytes) -> None:
    head = response_with(b"Transfer-Encoding: chunked")
    with pytest.raises(InvalidMessage):
        parse_response(head + body)


def test_parse_response_chunk_too_large_detected_from_its_size() -> None:
    head = response_with(b"Transfer-Encoding: chunked")
    with pytest.raises(InvalidMessage):
        parse_response(head + b"%x\r\n" % (MAX_BODY_SIZE + 1))
    # Many chunks adding up over the limit.
    chunk = b"%x\r\n" % (MAX_BODY_SIZE // 2) + b"a" * (MAX_BODY_SIZE // 2) + b"\r\n"
    with pytest.raises(InvalidMessage):
        parse_response(head + chunk + chunk + b"1\r\n")


def test_parse_response_chunk_line_too_long() -> None:
    head = response_with(b"Transfer-Encoding: chunked")
    with pytest.raises(InvalidMessage):
        parse_response(head + b"1;" + b"e" * MAX_LINE_LENGTH)


def test_parse_response_too_many_trailers() -> None:
    head = response_with(b"Transfer-Encoding: chunked")
    trailers = b"".join(b"T-%d: v\r\n" % index for index in range(MAX_NUM_HEADERS + 1))
    with pytest.raises(InvalidMessage):
        parse_response(head + b"0\r\n" + trailers)


def test_parse_response_body_until_eof() -> None:
    data = response_with(status_line=b"HTTP/1.1 500 Internal Server Error") + b"oops"
    assert parse_response(data) is None
    result = parse_response(data, eof=True)
    assert result is not None
    assert result[0].body == b"oops"
    assert result[1] == len(data)
    response, consumed = feed_response(data, eof=True)
    assert response.body == b"oops"
    assert consumed == len(data)


def test_parse_response_non_chunked_transfer_encoding_reads_until_eof() -> None:
    data = response_with(b"Transfer-Encoding: identity") + b"raw"
    assert parse_response(data) is None
    result = parse_response(data, eof=True)
    assert result is not None
    assert result[0].body == b"raw"


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_parse_response_without_body(status: bytes) -> None:
    data = response_with(b"Content-Length: 4", status_line=b"HTTP/1.1 " + status)
    result = parse_response(data + b"more")
    assert result is not None
    assert result[0].body == b""
    assert result[1] == len(data)


def test_parse_response_body_too_large() -> None:
    with pytest.raises(InvalidMessage):
        parse_response(response_with(b"Content-Length: %d" % (MAX_BODY_SIZE + 1)))
    head = response_with()
    assert parse_response(head + b"a" * MAX_BODY_SIZE) is None
    with pytest.raises(InvalidMessage):
        parse_response(head + b"a" * (MAX_BODY_SIZE + 1))


def test_parse_response_body_at_limit() -> None:
    data = response_with(b"Content-Length: %d" % MAX_BODY_SIZE) + b"a" * MAX_BODY_SIZE
    result = parse_response(data)
    assert result is not None
    assert len(result[0].body) == MAX_BODY_SIZE


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Too Low\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 O\x00K\r\n\r\n",
        b"HTTP/1.1 200 OK\nX: y\n\n",
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n",
    ],
)
def test_parse_response_errors(data: bytes) -> None:
    with pytest.raises(InvalidMessage):
        parse_response(data)


def test_parse_response_rejects_non_http_at_once() -> None:
    with pytest.raises(InvalidMessage):
        parse_response(b"S")
    with pytest.raises(InvalidMessage):
        parse_response(b"HTTX")
    assert parse_response(b"HTTP") is None


def test_parse_response_limits() -> None:
    with pytest.raises(InvalidMessage):
        parse_response(b"HTTP/1.1 200 " + b"r" * MAX_LINE_LENGTH)
    lines = [b"X-%d: v" % index for index in range(MAX_NUM_HEADERS + 1)]
    with pytest.raises(InvalidMessage):
        parse_response(response_with(*lines))
    with pytest.raises(InvalidMessage):
        parse_response(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 12000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "connection closed before the HTTP response"),
        (b"HTTP/1.1 101 Switching", "connection closed during the HTTP response"),
        (RESPONSE[:-2], "connection closed during the HTTP response"),
        (
            response_with(b"Content-Length: 5") + b"abc",
            "connection closed during the HTTP body",
        ),
        (
            response_with(b"Transfer-Encoding: chunked") + b"5\r\nab",
            "connection closed during the HTTP body",
        ),
    ],
)
def test_parse_response_eof_while_incomplete(data: bytes, message: str) -> None:
    with pytest.raises(InvalidMessage) as excinfo:
        parse_response(data, eof=True)
    assert str(excinfo.value) == message


def test_parse_response_eof_after_complete_response() -> None:
    result = parse_response(RESPONSE, eof=True)
    assert result is not None
    assert result[1] == len(RESPONSE)


# Serialization


def test_request_serialize() -> None:
    headers = Headers([("Host", "server.example.com"), ("Upgrade", "websocket")])
    request = Request("/chat?x=1", headers)
    assert request.serialize() == (
        b"GET /chat?x=1 HTTP/1.1\r\n"
        b"Host: server.example.com\r\nUpgrade: websocket\r\n\r\n"
    )


def test_request_round_trip() -> None:
    request, _ = parse_request(REQUEST)  # type: ignore[misc]
    assert request.serialize() == REQUEST
    headers = Headers([("Host", "x"), ("X-Latin", "café")])
    assert parse_request(Request("/", headers).serialize()) == (
        Request("/", headers),
        len(Request("/", headers).serialize()),
    )


@pytest.mark.parametrize("path", ["", "/a b", "/\r\nX: y", "/é"])
def test_request_serialize_invalid_path(path: str) -> None:
    with pytest.raises(ValueError):
        Request(path, Headers()).serialize()


@pytest.mark.parametrize("method", ["", "G ET", "GÉT"])
def test_request_serialize_invalid_method(method: str) -> None:
    with pytest.raises(ValueError):
        Request("/", Headers(), method).serialize()


def test_response_serialize_101() -> None:
    response, _ = parse_response(RESPONSE)  # type: ignore[misc]
    assert response.serialize() == RESPONSE


def test_response_serialize_adds_content_length() -> None:
    response = Response(200, "OK", Headers({"Content-Type": "text/plain"}), b"hi")
    assert response.serialize() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    )
    # The headers themselves are left alone.
    assert "Content-Length" not in response.headers
    assert Response(404, "Not Found", Headers()).serialize() == (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    )


def test_response_serialize_keeps_given_framing() -> None:
    response = Response(200, "OK", Headers({"Content-Length": "2"}), b"hi")
    assert response.serialize() == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    chunked = Response(
        200, "OK", Headers({"Transfer-Encoding": "chunked"}), b"0\r\n\r\n"
    )
    assert b"Content-Length" not in chunked.serialize()


def test_response_round_trip() -> None:
    response = Response(403, "Forbidden", Headers({"X": "y"}), b"go away")
    parsed, consumed = parse_response(response.serialize())  # type: ignore[misc]
    assert consumed == len(response.serialize())
    assert parsed.status_code == 403
    assert parsed.reason_phrase == "Forbidden"
    assert parsed.body == b"go away"
    assert parsed.headers == Headers({"X": "y", "Content-Length": "7"})


@pytest.mark.parametrize(
    "response",
    [
        Response(99, "Low", Headers()),
        Response(1000, "High", Headers()),
        Response(200, "O\r\nK", Headers()),
        Response(204, "No Content", Headers(), b"body"),
        Response(101, "Switching Protocols", Headers(), b"body"),
    ],
)
def test_response_serialize_invalid(response: Response) -> None:
    with pytest.raises(ValueError):
        response.serialize()


def test_values_are_frozen() -> None:
    request = Request("/", Headers())
    response = Response(200, "OK", Headers())
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.path = "/other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        response.status_code = 500  # type: ignore[misc]
    # Headers stay mutable: process_request may change them.
    response.headers["X"] = "y"
    assert response.headers["X"] == "y"


# Linear time


class ScanCountingBuffer(bytearray):
    """A bytearray that counts how many bytes find() is asked to scan."""

    scanned = 0

    def find(  # type: ignore[override]
        self, sub: bytes, start: int | None = None, end: int | None = None
    ) -> int:
        self.scanned += len(self) - (start or 0)
        return super().find(sub, start, end)


def test_request_parser_scans_each_byte_a_bounded_number_of_times() -> None:
    # One byte at a time, a stateless parser would rescan the whole buffer on
    # every call: quadratic work, a denial of service through slow clients.
    lines = [b"X-%03d: " % index + b"v" * 8000 for index in range(7)]
    data = request_with(*lines)
    parser = RequestParser()
    buf = ScanCountingBuffer()
    for index in range(len(data)):
        buf += data[index : index + 1]
        result = parser.parse(buf)
    assert result is not None
    assert result[1] == len(data)
    assert buf.scanned <= 2 * len(data)


def test_response_parser_scans_each_byte_a_bounded_number_of_times() -> None:
    chunk = b"1000\r\n" + b"c" * 0x1000 + b"\r\n"
    data = response_with(b"X: " + b"v" * 8000, b"Transfer-Encoding: chunked")
    data += chunk * 8 + b"0\r\n\r\n"
    parser = ResponseParser()
    buf = ScanCountingBuffer()
    for index in range(len(data)):
        buf += data[index : index + 1]
        result = parser.parse(buf)
    assert result is not None
    assert result[1] == len(data)
    assert len(result[0].body) == 8 * 0x1000
    assert buf.scanned <= 2 * len(data)


# ------------------------------------------- a head that came whole, at once


def test_whole_heads_are_read_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # The usual handshake comes in one read: its fields are taken in one pass,
    # not line by line (whose per-field method must not run).
    expected_request = feed_request(REQUEST)
    expected_response = feed_response(RESPONSE)
    odd = request_with(b"X-Empty:", b"X-Spaces: \t padded \t ", b"X-Latin: caf\xe9")
    expected_odd = feed_request(odd)

    def line_by_line(*args: object) -> None:
        raise AssertionError("read line by line")

    monkeypatch.setattr(http11._HeadScanner, "_add_field", line_by_line)
    assert parse_request(REQUEST + FRAME) == (expected_request[0], len(REQUEST))
    assert parse_response(RESPONSE + FRAME) == (expected_response[0], len(RESPONSE))
    assert parse_request(odd) == expected_odd
    assert expected_odd[0].headers["X-Spaces"] == "padded"


@pytest.mark.parametrize(
    "data",
    [
        # Each unusual in a way that the line by line path must handle.
        request_with(b"X-Folded: a", b" b"),
        request_with(b"X-Bare-LF: a\nb"),
        request_with(b"X-Bare-CR: a\rb"),
        request_with(request_line=b"GET /a\nb HTTP/1.1"),
        request_with(request_line=b"GET /a\rb HTTP/1.1"),
        request_with(b"No colon"),
        request_with(b"Space before : colon"),
        b"\r\n" + request_with(b"X-After: an empty line"),
        request_with(b"X-Long: " + b"a" * MAX_LINE_LENGTH),
        request_with(*[b"X-Many: 1"] * MAX_NUM_HEADERS),
        request_with(b"X-Control: \x01"),
    ],
)
def test_unusual_whole_heads_read_as_line_by_line(data: bytes) -> None:
    try:
        whole = parse_request(data)
    except InvalidMessage as exc:
        with pytest.raises(InvalidMessage) as bytewise:
            feed_request(data)
        assert (str(bytewise.value), bytewise.value.status_code) == (
            str(exc),
            exc.status_code,
        )
    else:
        assert whole == feed_request(data)


_NAMES = st.sampled_from([b"Host", b"X-A", b"x!#$%&'*+-.^_`|~", b"", b"a b", b" fold"])


@given(st.lists(st.tuples(_NAMES, st.binary(max_size=12)), max_size=6))
@example([(b"X-A", b"\r\n")])  # a value that ends the head early
def test_whole_and_line_by_line_heads_agree(fields: list[tuple[bytes, bytes]]) -> None:
    data = request_with(*[name + b":" + value for name, value in fields])

    def outcome(parse: object) -> object:
        try:
            return parse(data)  # type: ignore[operator]
        except InvalidMessage:
            return "invalid"

    def bytewise(data: bytes) -> tuple[Request, int]:
        # The random bytes may end the head before the end of the data (a
        # value with CR LF CR LF): both paths stop there.
        return feed_request(data, to_the_end=False)

    whole = outcome(parse_request)
    if whole is None:  # the random bytes made an incomplete head
        return
    assert whole == outcome(bytewise)
