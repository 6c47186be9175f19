"""Bounded, incremental HTTP/1.1 for the WebSocket opening handshake.

The opening handshake is one HTTP/1.1 request and one response (RFC 6455 §4).
This module parses them from raw bytes and serializes them back, and nothing
more: no keep-alive, no pipelining, no request bodies.

Parsing works on a buffer that the caller owns and grows by appending what it
reads from the network. :func:`parse_request` and :func:`parse_response`
look at the whole buffer on every call; :class:`RequestParser` and
:class:`ResponseParser` remember how far they got, so feeding a message one
byte at a time costs linear, not quadratic, time. Either way every limit is
checked as soon as the buffer shows it is exceeded, without waiting for the
end of the line or of the head, so a peer can never make us buffer more than
the limits below.
"""

from __future__ import annotations

import dataclasses
import re

from wssync.exceptions import InvalidHeader, InvalidMessage
from wssync.sansio.headers import Headers, parse_connection

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_HEAD_SIZE",
    "MAX_LINE_LENGTH",
    "MAX_NUM_HEADERS",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "parse_request",
    "parse_response",
]

MAX_LINE_LENGTH = 8192
"""Longest request line, status line, header line or chunk-size line, in bytes.

Precedent: Apache's LimitRequestLine and LimitRequestFieldSize default to
8190 bytes, nginx's large_client_header_buffers to 8 KiB, and websockets uses
8192. Browsers' handshakes are a few hundred bytes; long cookies fit.
"""

MAX_NUM_HEADERS = 128
"""Most header fields in a message (and trailer fields in a chunked body).

Precedent: Apache's LimitRequestFields and CPython's http.client both allow
100; websockets allows 128. A browser's handshake has about 15.
"""

MAX_HEAD_SIZE = 65536
"""Largest head (start line, fields and the empty line), in bytes.

Precedent: Node.js caps the head at 16 KiB, Apache at about 800 KiB (100
fields of 8 KiB), Go's net/http at 1 MiB. 64 KiB holds eight maximal lines;
it bounds memory per handshake in flight together with MAX_LINE_LENGTH.
"""

MAX_BODY_SIZE = 1_048_576
"""Largest response body we read, in bytes.

Precedent: websockets reads at most about 1 MB of the body of a failed
handshake. The body of a non-101 response is only shown in an error
message, so 1 MiB is generous.
"""

# RFC 7230 §3.2.6: token = 1*tchar.
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 7230 §3.2: field-value is made of VCHAR, SP, HTAB and obs-text.
_FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# The header fields of a head, each preceded by its CRLF, when every one is
# a plain "token:value" line (no obs-fold): see _HeadScanner._whole_head.
_FIELD_LINES_RE = re.compile(
    rb"(?:\r\n" + _TOKEN_RE.pattern + rb":" + _FIELD_VALUE_RE.pattern + rb")*"
)
# RFC 7230 §3.1.1: request-target; for the handshake it is origin-form,
# "/path?query" (RFC 6455 §3), but any run of visible ASCII is accepted here
# and routing decides. Whitespace and controls would break the request line.
_TARGET_RE = re.compile(rb"[\x21-\x7e]+")
_TARGET_STR_RE = re.compile(r"[\x21-\x7e]+")
# RFC 7230 §2.6: HTTP-version = HTTP-name "/" DIGIT "." DIGIT.
_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")
# RFC 7230 §3.1.2: status-code = 3DIGIT.
_STATUS_CODE_RE = re.compile(rb"[0-9]{3}")
# RFC 7230 §3.1.2: reason-phrase = *( HTAB / SP / VCHAR / obs-text ).
_REASON_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_REASON_STR_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 7230 §4.1: chunk-size = 1*HEXDIG; 16 digits already exceed any limit.
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")

_CR = 13
_LF = 10

# How much of a request line we look at before its end to reject a request
# early: enough for any method we could accept, and for an HTTP/1.1 prefix.
_METHOD_PEEK = 32


def _has_no_body(status_code: int) -> bool:
    """Tell whether a response with this status never has a body.

    RFC 7230 §3.3.3: 1xx (including 101), 204 and 304 responses end with
    the head.
    """
    return 100 <= status_code < 200 or status_code in (204, 304)


@dataclasses.dataclass(frozen=True)
class Request:
    """An HTTP/1.1 request: the client's side of the opening handshake.

    Attributes:
        path: The request target, such as ``"/chat?room=1"``.
        headers: The header fields.
        method: The request method; the handshake uses ``GET``.
    """

    path: str
    headers: Headers
    method: str = "GET"

    def serialize(self) -> bytes:
        """Encode the request head for the wire.

        Returns:
            The request line, the header fields and the empty line.

        Raises:
            ValueError: If the method is not a token or the path contains
                whitespace, controls or non-ASCII characters.
        """
        if not _TOKEN_RE.fullmatch(self.method.encode("latin-1", "replace")):
            raise ValueError(f"invalid method: {self.method!r}")
        if not _TARGET_STR_RE.fullmatch(self.path):
            raise ValueError(f"invalid request target: {self.path!r}")
        head = f"{self.method} {self.path} HTTP/1.1\r\n{self.headers}"
        # Headers only hold characters up to U+00FF (obs-text as Latin-1).
        return head.encode("latin-1")


@dataclasses.dataclass(frozen=True)
class Response:
    """An HTTP/1.1 response: the server's side of the opening handshake.

    Attributes:
        status_code: The status, such as 101.
        reason_phrase: The reason phrase, such as ``"Switching Protocols"``.
        headers: The header fields; they may be changed before sending.
        body: The body; empty for a 101.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """Encode the response for the wire.

        When the status allows a body and the headers say nothing about its
        length, a ``Content-Length`` field is written (but not added to
        :attr:`headers`), so that the client needn't wait for the
        connection to close.

        Returns:
            The status line, the header fields, the empty line and the body.

        Raises:
            ValueError: If the status code is not three digits, the reason
                phrase contains controls, or a body is given for a status
                that cannot have one.
        """
        if not 100 <= self.status_code <= 999:
            raise ValueError(f"invalid status code: {self.status_code!r}")
        if not _REASON_STR_RE.fullmatch(self.reason_phrase):
            raise ValueError(f"invalid reason phrase: {self.reason_phrase!r}")
        head = f"HTTP/1.1 {self.status_code} {self.reason_phrase}\r\n"
        if _has_no_body(self.status_code):
            if self.body:
                raise ValueError(f"a {self.status_code} response cannot have a body")
            head += str(self.headers)
        elif "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
            head += str(self.headers)
        else:
            head += str(self.headers)[:-2] + f"Content-Length: {len(self.body)}\r\n\r\n"
        return head.encode("latin-1") + bytes(self.body)


class _HeadScanner:
    """Incremental reader of one message head: start line and header fields.

    It remembers where the current line starts and where to resume looking
    for its LF, so each byte of the buffer is examined a bounded number of
    times however the buffer grows.
    """

    def __init__(self, start: int, *, request: bool, budget_start: int = 0) -> None:
        self.start = start  # where this message begins in the buffer
        # Where MAX_HEAD_SIZE is counted from: interim 1xx responses share
        # the budget of the final response, so endless 1xx can't grow it.
        self.budget_start = budget_start
        self.request = request
        self._line_start = start
        self._search = start
        self.start_line: bytes | None = None
        # A response's status code and reason phrase, once its line is read.
        self.status: tuple[int, str] = (0, "")
        self.fields: list[tuple[str, str]] = []

    def scan(self, buf: bytes | bytearray) -> int | None:
        """Advance over complete lines; return the end of the head when reached.

        Raises:
            InvalidMessage: As soon as the head is malformed or too large.
        """
        if self._search == self.start:
            end = self._whole_head(buf)
            if end is not None:
                return end
        while True:
            lf = buf.find(b"\n", self._search)
            if lf == -1:
                self._search = len(buf)
                self._check_partial_line(buf)
                return None
            line_end = lf + 1
            # Check the more specific limit first (CR excluded from the length).
            if lf - 1 - self._line_start > MAX_LINE_LENGTH:
                raise self._line_too_long()
            if line_end - self.budget_start > MAX_HEAD_SIZE:
                raise InvalidMessage("HTTP head is too large", 431)
            # RFC 7230 §3.5: lines end with CRLF; we don't take up the
            # permission to accept a bare LF, and a bare CR is never valid.
            if lf == self._line_start or buf[lf - 1] != _CR:
                raise InvalidMessage("HTTP line doesn't end with CRLF")
            line = bytes(buf[self._line_start : lf - 1])
            self._line_start = self._search = line_end
            if self.start_line is None:
                # RFC 7230 §3.5: a server SHOULD ignore at least one empty
                # line received before the request-line (MAX_HEAD_SIZE
                # bounds how many).
                if self.request and not line:
                    continue
                self.start_line = line
                if self.request:
                    _check_request_line(line)
                else:
                    self.status = _check_status_line(line)
                continue
            if not line:
                return line_end
            self._add_field(line)

    def _whole_head(self, buf: bytes | bytearray) -> int | None:
        """Read a head that came whole, in one pass; return its end.

        The usual case: the whole head came in one read. Returns ``None``,
        having read nothing, when the head is incomplete or has anything
        unusual (a bare LF, a line or a head over the limits, too many
        fields, an empty line first, a folded or malformed field): the line
        by line path then finds the same fields, or the precise error. (A
        bare CR fails the same checks on either path.) This pass takes a
        third less time than line by line for a handshake's head.
        """
        start = self.start
        end = buf.find(b"\r\n\r\n", start)
        if end == -1 or end + 4 - self.budget_start > MAX_HEAD_SIZE:
            return None
        head = bytes(buf[start:end])
        lines = head.split(b"\r\n")
        breaks = len(lines) - 1
        first = lines[0]
        if (
            head.count(b"\n") != breaks  # a bare LF: lines split otherwise
            or breaks > MAX_NUM_HEADERS
            or not first
            or max(map(len, lines)) > MAX_LINE_LENGTH
            or not _FIELD_LINES_RE.fullmatch(head, len(first))
        ):
            return None
        if self.request:
            _check_request_line(first)
        else:
            self.status = _check_status_line(first)
        self.start_line = first
        fields = self.fields
        for line in lines[1:]:
            # RFC 7230 §3.2: OWS around the value is not part of it.
            name, _, value = line.partition(b":")
            fields.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
        self._line_start = self._search = end + 4
        return end + 4

    def _line_too_long(self) -> InvalidMessage:
        if self.start_line is None and self.request:
            # RFC 7231 §6.5.12: 414 URI Too Long, as Apache and nginx answer
            # for an over-long request line; 431 is for header fields.
            return InvalidMessage("HTTP request line is too long", 414)
        return InvalidMessage("HTTP header line is too long", 431)

    def _check_partial_line(self, buf: bytes | bytearray) -> None:
        """Reject what an incomplete line already shows to be invalid."""
        partial = len(buf) - self._line_start
        # The line may still end with CR LF after MAX_LINE_LENGTH bytes.
        if partial > MAX_LINE_LENGTH + 1 or (
            partial == MAX_LINE_LENGTH + 1 and buf[-1] != _CR
        ):
            raise self._line_too_long()
        if len(buf) - self.budget_start > MAX_HEAD_SIZE:
            raise InvalidMessage("HTTP head is too large", 431)
        if partial == 0:
            return
        first = buf[self._line_start]
        if self.start_line is None:
            peek = bytes(buf[self._line_start : self._line_start + _METHOD_PEEK])
            if self.request:
                _check_request_line_prefix(peek)
            elif not b"HTTP/".startswith(peek[:5]):
                raise InvalidMessage("not an HTTP/1.1 response")
        elif (
            len(self.fields) >= MAX_NUM_HEADERS
            and first not in b"\r \t"  # not the empty line nor a continuation
        ):
            raise InvalidMessage("too many HTTP header fields", 431)

    def _add_field(self, line: bytes) -> None:
        """Parse one header line into a (name, value) field."""
        if line[0] in b" \t":
            # RFC 7230 §3.2.4: a server MUST reject obs-fold with 400; a user
            # agent MUST replace it with SP.
            if self.request or not self.fields:
                raise InvalidMessage("obsolete line folding in HTTP header")
            value = line.strip(b" \t")
            if not _FIELD_VALUE_RE.fullmatch(value):
                raise InvalidMessage("invalid HTTP header value")
            name, previous = self.fields[-1]
            self.fields[-1] = (name, f"{previous} {value.decode('latin-1')}")
            return
        raw_name, colon, raw_value = line.partition(b":")
        # RFC 7230 §3.2.4: no whitespace is allowed between the field name
        # and the colon; a server MUST reject such a message with 400.
        if not colon or not _TOKEN_RE.fullmatch(raw_name):
            raise InvalidMessage(f"invalid HTTP header line: {line[:80]!r}")
        # RFC 7230 §3.2: OWS around the value is not part of it.
        raw_value = raw_value.strip(b" \t")
        if not _FIELD_VALUE_RE.fullmatch(raw_value):
            raise InvalidMessage(f"invalid HTTP header value for {raw_name.decode()}")
        self.fields.append((raw_name.decode("ascii"), raw_value.decode("latin-1")))
        if len(self.fields) > MAX_NUM_HEADERS:
            raise InvalidMessage("too many HTTP header fields", 431)

    def headers(self) -> Headers:
        """Return the fields read so far as Headers."""
        return Headers._trusted(self.fields)  # checked as they were read


def _check_request_line_prefix(peek: bytes) -> None:
    """Reject a request as soon as its first bytes show it can't be accepted.

    This answers garbage (such as a TLS ClientHello sent to a plain port) and
    other methods without waiting for a whole line.
    """
    if peek.startswith(b"\r"):
        # An empty line before the request line (see _HeadScanner.scan);
        # anything but LF after the CR is a bare CR.
        if len(peek) > 1:
            raise InvalidMessage("HTTP line doesn't end with CRLF")
        return
    space = peek.find(b" ")
    method = peek if space == -1 else peek[:space]
    if space == 0 or (method and not _TOKEN_RE.fullmatch(method)):
        raise InvalidMessage("not an HTTP/1.1 request")
    if (space != -1 or len(peek) >= _METHOD_PEEK) and method != b"GET":
        raise InvalidMessage("HTTP method must be GET", 405)


def _check_request_line(line: bytes) -> None:
    """Validate a complete request line (RFC 7230 §3.1.1)."""
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]):
        raise InvalidMessage("not an HTTP/1.1 request")
    method, target, version = parts
    # RFC 6455 §4.1: the method of the request MUST be GET.
    if method != b"GET":
        raise InvalidMessage("HTTP method must be GET", 405)
    if not _VERSION_RE.fullmatch(version):
        raise InvalidMessage("not an HTTP/1.1 request")
    # RFC 6455 §4.1: the HTTP version MUST be at least 1.1; HTTP/2 and
    # later don't use this syntax, so 1.1 is the only one that fits.
    if version != b"HTTP/1.1":
        raise InvalidMessage(f"unsupported HTTP version: {version.decode()}", 505)
    if not _TARGET_RE.fullmatch(target):
        raise InvalidMessage("invalid HTTP request target")


def _check_status_line(line: bytes) -> tuple[int, str]:
    """Validate a complete status line (RFC 7230 §3.1.2).

    Returns:
        The status code and the reason phrase.
    """
    version, _, rest = line.partition(b" ")
    status, _, reason = rest.partition(b" ")
    # A server speaking HTTP/1.0 can't switch protocols but can tell us why
    # it refused; accept its answer so that the caller sees the status.
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise InvalidMessage(f"unsupported HTTP version: {version[:20]!r}", 505)
    if not _STATUS_CODE_RE.fullmatch(status) or status < b"100":
        raise InvalidMessage(f"invalid HTTP status code: {status[:20]!r}")
    if not _REASON_RE.fullmatch(reason):
        raise InvalidMessage("invalid HTTP reason phrase")
    return int(status), reason.decode("latin-1")


def _content_length(headers: Headers) -> int | None:
    """Return the Content-Length of a message, or None if it has none.

    RFC 7230 §3.3.2: Content-Length = 1*DIGIT; a list of identical values
    (from repeated fields or a comma list) may be taken as that value, but
    differing values make the message invalid.
    """
    values = {
        item.strip(" \t")
        for value in headers.get_all("Content-Length")
        for item in value.split(",")
    }
    if not values:
        return None
    if len(values) != 1:
        raise InvalidMessage("conflicting Content-Length headers")
    (value,) = values
    if not value.isdigit() or not value.isascii():
        raise InvalidMessage(f"invalid Content-Length: {value[:20]!r}")
    return int(value)


class RequestParser:
    """Incremental parser of the handshake request, for a growing buffer.

    Call :meth:`parse` every time bytes are appended to the buffer; it
    resumes where it stopped on the previous call. The buffer must only grow
    by appending until :meth:`parse` returns a request.
    """

    def __init__(self) -> None:
        self._scanner = _HeadScanner(0, request=True)
        self._result: tuple[Request, int] | None = None

    def parse(self, buf: bytes | bytearray) -> tuple[Request, int] | None:
        """Parse a request from the start of ``buf``.

        Args:
            buf: Everything received so far.

        Returns:
            ``None`` if the request head isn't complete yet; otherwise the
            request and the number of bytes it took (what follows belongs to
            the WebSocket connection).

        Raises:
            InvalidMessage: As soon as the request is malformed, too large or
                not acceptable for a WebSocket handshake; its
                ``status_code`` is the HTTP status to answer with.
        """
        # Once parsed, what follows the head isn't HTTP: don't read it.
        if self._result is not None:
            return self._result
        end = self._scanner.scan(buf)
        if end is None:
            return None
        assert self._scanner.start_line is not None
        _, target, _ = self._scanner.start_line.split(b" ")
        headers = self._scanner.headers()
        # RFC 7230 §5.4: a server MUST respond with 400 to an HTTP/1.1
        # request without a Host header or with more than one.
        if len(headers.get_all("Host")) != 1:
            raise InvalidMessage("HTTP request must have exactly one Host header")
        # The bytes after the head are WebSocket frames; a request body
        # would be mistaken for them (RFC 7230 §3.3.3 defines how a body
        # would be framed, which a GET upgrade has no use for).
        if "Transfer-Encoding" in headers:
            raise InvalidMessage("HTTP request body is not supported")
        if _content_length(headers):
            raise InvalidMessage("HTTP request body is not supported")
        self._result = Request(target.decode("ascii"), headers), end
        return self._result


def parse_request(buf: bytes | bytearray) -> tuple[Request, int] | None:
    """Parse a handshake request from the start of ``buf``.

    This looks at the whole buffer on every call; use a
    :class:`RequestParser` to feed a buffer that grows in small steps.

    Args:
        buf: Everything received so far.

    Returns:
        ``None`` if the request head isn't complete yet; otherwise the
        request and the number of bytes it took.

    Raises:
        InvalidMessage: As soon as the request is malformed (400), too large
            (414, 431), not a GET (405) or not HTTP/1.1 (505).
    """
    return RequestParser().parse(buf)


class _ChunkedBody:
    """Incremental decoder of a chunked body (RFC 7230 §4.1)."""

    def __init__(self, start: int) -> None:
        # Chunk sizes, extensions, line ends and trailers count too: without
        # this, 1-byte chunks with 8 KB of extensions each would make the
        # client buffer 8 KB per byte of body. They may add at most a head's
        # worth to the body's limit.
        self._limit = start + MAX_BODY_SIZE + MAX_HEAD_SIZE
        self._pos = start  # start of the next chunk-size line or chunk data
        self._search = start
        self._size: int | None = None  # size of the chunk whose data is next
        self._trailers = 0
        self._in_trailers = False
        self._chunks: list[bytes] = []
        self._length = 0

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def _next_line(self, buf: bytes | bytearray) -> bytes | None:
        lf = buf.find(b"\n", self._search)
        if lf == -1:
            self._search = len(buf)
            if len(buf) - self._pos > MAX_LINE_LENGTH + 1:
                raise InvalidMessage("HTTP chunk line is too long", 431)
            return None
        if lf == self._pos or buf[lf - 1] != _CR:
            raise InvalidMessage("HTTP line doesn't end with CRLF")
        line = bytes(buf[self._pos : lf - 1])
        if len(line) > MAX_LINE_LENGTH:
            raise InvalidMessage("HTTP chunk line is too long", 431)
        self._pos = self._search = lf + 1
        return line

    def decode(self, buf: bytes | bytearray) -> int | None:
        """Advance over the chunks in ``buf``; return where the body ends."""
        if len(buf) > self._limit:
            raise InvalidMessage("HTTP body is too large", 413)
        while True:
            if self._in_trailers:
                line = self._next_line(buf)
                if line is None:
                    return None
                if not line:
                    return self._pos
                # Trailer fields are read and dropped: nothing in the
                # handshake needs them.
                self._trailers += 1
                if self._trailers > MAX_NUM_HEADERS:
                    raise InvalidMessage("too many HTTP trailer fields", 431)
            elif self._size is None:
                line = self._next_line(buf)
                if line is None:
                    return None
                # chunk = chunk-size [ chunk-ext ] CRLF: extensions are
                # ignored (RFC 7230 §4.1.1 allows ignoring them).
                size_text = line.split(b";", 1)[0].rstrip(b" \t")
                if not _CHUNK_SIZE_RE.fullmatch(size_text):
                    raise InvalidMessage("invalid HTTP chunk size")
                size = int(size_text, 16)
                if self._length + size > MAX_BODY_SIZE:
                    raise InvalidMessage("HTTP body is too large", 413)
                if size == 0:
                    self._in_trailers = True
                else:
                    self._size = size
            else:
                end = self._pos + self._size
                if len(buf) < end + 2:
                    return None
                if buf[end : end + 2] != b"\r\n":
                    raise InvalidMessage("HTTP chunk doesn't end with CRLF")
                self._chunks.append(bytes(buf[self._pos : end]))
                self._length += self._size
                self._size = None
                self._pos = self._search = end + 2


class ResponseParser:
    """Incremental parser of the handshake response, for a growing buffer.

    Call :meth:`parse` every time bytes are appended to the buffer; it
    resumes where it stopped on the previous call. The buffer must only grow
    by appending until :meth:`parse` returns a response.
    """

    def __init__(self) -> None:
        self._scanner = _HeadScanner(0, request=False)
        self._head_end: int | None = None
        self._status_code = 0
        self._reason_phrase = ""
        self._headers = Headers()
        # Body framing, once the head is read: a length, chunked, or until
        # the connection closes (RFC 7230 §3.3.3).
        self._content_length: int | None = None
        self._chunked: _ChunkedBody | None = None
        self._result: tuple[Response, int] | None = None

    def parse(
        self, buf: bytes | bytearray, *, eof: bool = False
    ) -> tuple[Response, int] | None:
        """Parse a response from the start of ``buf``.

        Interim 1xx responses other than 101 are skipped (RFC 7231 §6.2: a
        client MUST be able to parse them even when it doesn't expect them).

        Args:
            buf: Everything received so far.
            eof: Whether the peer has closed the connection, so ``buf`` is
                all there will ever be.

        Returns:
            ``None`` if the response isn't complete yet; otherwise the
            response and the number of bytes it took (for a 101, what
            follows belongs to the WebSocket connection).

        Raises:
            InvalidMessage: As soon as the response is malformed or too
                large, or if ``eof`` is true and the response is incomplete.
        """
        if self._result is not None:
            return self._result
        while self._head_end is None:
            end = self._scanner.scan(buf)
            if end is None:
                if eof:
                    if len(buf) == self._scanner.start:
                        raise InvalidMessage(
                            "connection closed before the HTTP response"
                        )
                    raise InvalidMessage("connection closed during the HTTP response")
                return None
            status_code, reason_phrase = self._scanner.status
            if 100 <= status_code < 200 and status_code != 101:
                self._scanner = _HeadScanner(end, request=False, budget_start=0)
                continue
            self._start_body(end, status_code, reason_phrase)
        self._result = self._parse_body(buf, self._head_end, eof)
        return self._result

    def _start_body(self, head_end: int, status_code: int, reason_phrase: str) -> None:
        """Record the head and decide how the body is framed."""
        headers = self._scanner.headers()
        self._head_end = head_end
        self._status_code = status_code
        self._reason_phrase = reason_phrase
        self._headers = headers
        if _has_no_body(status_code):
            self._content_length = 0
        elif "Transfer-Encoding" in headers:
            # RFC 7230 §3.3.3: Transfer-Encoding overrides Content-Length;
            # if chunked is the final coding the body is chunked, otherwise
            # it runs until the connection closes.
            try:
                codings = [
                    coding.lower()
                    for value in headers.get_all("Transfer-Encoding")
                    for coding in parse_connection(value)
                ]
            except InvalidHeader:
                raise InvalidMessage("invalid Transfer-Encoding header") from None
            if codings[-1] == "chunked":
                self._chunked = _ChunkedBody(head_end)
        else:
            self._content_length = _content_length(headers)
            if (
                self._content_length is not None
                and self._content_length > MAX_BODY_SIZE
            ):
                raise InvalidMessage("HTTP body is too large", 413)

    def _parse_body(
        self, buf: bytes | bytearray, head_end: int, eof: bool
    ) -> tuple[Response, int] | None:
        """Read the body that follows the head, framed as decided."""
        if self._chunked is not None:
            end = self._chunked.decode(buf)
            if end is None:
                if eof:
                    raise InvalidMessage("connection closed during the HTTP body")
                return None
            return self._response(self._chunked.body), end
        if self._content_length is not None:
            end = head_end + self._content_length
            if len(buf) < end:
                if eof:
                    raise InvalidMessage("connection closed during the HTTP body")
                return None
            return self._response(bytes(buf[head_end:end])), end
        # Until the connection closes (RFC 7230 §3.3.3 rule 7).
        if len(buf) - head_end > MAX_BODY_SIZE:
            raise InvalidMessage("HTTP body is too large", 413)
        if not eof:
            return None
        return self._response(bytes(buf[head_end:])), len(buf)

    def _response(self, body: bytes) -> Response:
        return Response(self._status_code, self._reason_phrase, self._headers, body)


def parse_response(
    buf: bytes | bytearray, *, eof: bool = False
) -> tuple[Response, int] | None:
    """Parse a handshake response from the start of ``buf``.

    The body is read by Content-Length, chunked, or until the connection
    closes, except for 1xx, 204 and 304 responses which have none. This
    looks at the whole buffer on every call; use a :class:`ResponseParser`
    to feed a buffer that grows in small steps.

    Args:
        buf: Everything received so far.
        eof: Whether the peer has closed the connection.

    Returns:
        ``None`` if the response isn't complete yet; otherwise the response
        and the number of bytes it took.

    Raises:
        InvalidMessage: As soon as the response is malformed or too large,
            or if ``eof`` is true and the response is incomplete.
    """
    return ResponseParser().parse(buf, eof=eof)
