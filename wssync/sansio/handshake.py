"""The WebSocket opening handshake, both sides (RFC 6455 §4).

:class:`ClientHandshake` builds the client's upgrade request and checks the
server's response; :class:`ServerHandshake` checks a request and builds
either the 101 response or the HTTP error to send instead. Both negotiate
extensions (RFC 6455 §9) and subprotocols (RFC 6455 §1.9, §4).

No I/O and no clock: the caller moves the bytes (see
:mod:`wssync.sansio.http11`), and there is no Date header.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import http
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Union

from wssync.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from wssync.sansio.frames import masking_key
from wssync.sansio.headers import (
    ExtensionParameter,
    Headers,
    HeadersLike,
    build_authorization_basic,
    build_extension,
    build_subprotocol,
    parse_connection,
    parse_extension,
    parse_subprotocol,
    parse_upgrade,
)
from wssync.sansio.http11 import Request, Response
from wssync.sansio.uri import WebSocketURI, build_host
from wssync.version import __version__

if TYPE_CHECKING:
    from wssync.sansio.extensions.base import (
        ClientExtensionFactory,
        Extension,
        ServerExtensionFactory,
    )

__all__ = [
    "GUID",
    "USER_AGENT",
    "Accepted",
    "ClientHandshake",
    "ServerHandshake",
    "accept_key",
    "generate_key",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The globally unique identifier of RFC 6455 §1.3, mixed into the accept key."""

USER_AGENT = (
    f"wssync/{__version__} Python/{sys.version_info.major}.{sys.version_info.minor}"
)
"""Default value of the User-Agent (client) and Server (server) headers."""

# RFC 6455 §4.1: the version of the protocol this library speaks.
_VERSION = "13"

# Headers the client handshake owns: letting additional_headers set them too
# would produce a request that no server can accept.
_RESERVED_REQUEST_HEADERS = (
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
)

_BROWSER_HINT = (
    "You cannot access a WebSocket server directly with a browser. "
    "You need a WebSocket client."
)

# An allowed origin: a string, a compiled regex, or None for "no Origin".
_OriginPattern = Union[str, re.Pattern[str], None]


def generate_key() -> str:
    """Generate a fresh Sec-WebSocket-Key.

    RFC 6455 §4.1: a randomly selected 16-byte value, base64-encoded, chosen
    anew for each connection.

    Returns:
        The key, 24 base64 characters.
    """
    # Four masking keys: 16 bytes of os.urandom() from the process's pool,
    # each handed out once, without a getrandom() call per connection.
    key = masking_key() + masking_key() + masking_key() + masking_key()
    return binascii.b2a_base64(key, newline=False).decode("ascii")


def accept_key(key: str) -> str:
    """Compute the Sec-WebSocket-Accept value answering a key.

    RFC 6455 §4.2.2: base64 of the SHA-1 of the key concatenated with the
    GUID ``258EAFA5-E914-47DA-95CA-C5AB0DC85B11``.

    Args:
        key: The client's Sec-WebSocket-Key.

    Returns:
        The accept value, 28 base64 characters.
    """
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _single_value(headers: Headers, name: str) -> str:
    """Return the only value of a required header.

    Raises:
        InvalidHeader: If the header is missing or repeated.
    """
    values = headers.get_all(name)
    if not values:
        raise InvalidHeader(name)
    if len(values) > 1:
        raise InvalidHeader(name, ", ".join(values))
    return values[0]


def _has_connection_upgrade(headers: Headers) -> bool:
    """Tell whether the Connection header lists the "upgrade" option.

    Raises:
        InvalidUpgrade: If a Connection value is malformed.
    """
    options: list[str] = []
    for value in headers.get_all("Connection"):
        try:
            options.extend(parse_connection(value))
        except InvalidHeader:
            raise InvalidUpgrade("Connection", value) from None
    return any(option.lower() == "upgrade" for option in options)


def _upgrade_protocols(headers: Headers) -> list[str]:
    """Return the protocols listed in the Upgrade header.

    Raises:
        InvalidUpgrade: If an Upgrade value is malformed.
    """
    protocols: list[str] = []
    for value in headers.get_all("Upgrade"):
        try:
            protocols.extend(parse_upgrade(value))
        except InvalidHeader:
            raise InvalidUpgrade("Upgrade", value) from None
    return protocols


def _header_text(headers: Headers, name: str) -> str | None:
    """Return every value of a header joined by commas, or None if missing."""
    values = headers.get_all(name)
    return ", ".join(values) if values else None


class ClientHandshake:
    """The client side of the opening handshake.

    Build the request with :meth:`request`, send it, parse the answer with
    :func:`~wssync.sansio.http11.parse_response`, then check it with
    :meth:`process_response`.

    Args:
        uri: Where to connect.
        origin: The Origin header to send, if any.
        extensions: Extensions to offer, in order of preference.
        subprotocols: Subprotocols to offer, in order of preference.
        additional_headers: Extra request headers. Host, Origin,
            Authorization and User-Agent given here replace the ones the
            handshake would send.
        user_agent_header: The User-Agent header; ``None`` leaves it out.

    Raises:
        ValueError: If ``additional_headers`` sets Upgrade, Connection,
            Sec-WebSocket-Key or Sec-WebSocket-Version, which the handshake
            owns, or if a subprotocol is not a token.
    """

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: str | None = None,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        subprotocols: Sequence[str] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = USER_AGENT,
    ) -> None:
        self.uri = uri
        self.origin = origin
        self.extensions = list(extensions or ())
        self.subprotocols = list(subprotocols or ())
        if self.subprotocols:
            build_subprotocol(self.subprotocols)  # fail early on non-tokens
        # Headers(()) would go through update()'s ABC checks for nothing.
        self.additional_headers = (
            Headers(additional_headers) if additional_headers else Headers()
        )
        if self.additional_headers:
            for name in _RESERVED_REQUEST_HEADERS:
                if name in self.additional_headers:
                    raise ValueError(f"additional_headers can't set {name}")
        self.user_agent_header = user_agent_header
        self.key: str | None = None
        self._accept: str | None = None  # accept_key(self.key), once computed
        # What the last request offered, so that the response can only
        # accept that (including subprotocols offered in additional_headers).
        self._offered_subprotocols: list[str] = []

    def request(self) -> Request:
        """Build the handshake request, with a fresh key.

        Returns:
            The GET request to send (RFC 6455 §4.1).
        """
        self.key = generate_key()
        self._accept = None
        extra = self.additional_headers
        given = extra._dict  # lower-case names: plain dict lookups
        headers = Headers()
        if "host" not in given:
            # Checked: a WebSocketURI can be made with any host.
            headers["Host"] = build_host(self.uri.host, self.uri.port, self.uri.secure)
        # Fields made here of constants and base64 skip Headers' checks.
        add = headers._add_trusted
        add("Upgrade", "websocket")
        add("Connection", "Upgrade")
        add("Sec-WebSocket-Key", self.key)
        add("Sec-WebSocket-Version", _VERSION)
        if self.origin is not None and "origin" not in given:
            headers["Origin"] = self.origin
        if self.extensions:
            headers["Sec-WebSocket-Extensions"] = build_extension(
                [
                    (factory.name, factory.get_request_params())
                    for factory in self.extensions
                ]
            )
        if self.subprotocols:
            headers["Sec-WebSocket-Protocol"] = build_subprotocol(self.subprotocols)
        if self.uri.user_info is not None and "authorization" not in given:
            add("Authorization", build_authorization_basic(*self.uri.user_info))
        if given:
            headers.update(extra)
        user_agent = self.user_agent_header
        if user_agent is not None and "user-agent" not in given:
            if user_agent is USER_AGENT:
                add("User-Agent", user_agent)  # the library's own: valid
            else:
                headers["User-Agent"] = user_agent
        offered: list[str] = []
        if self.subprotocols or given:
            for value in headers.get_all("Sec-WebSocket-Protocol"):
                offered.extend(parse_subprotocol(value))
        self._offered_subprotocols = offered
        return Request(self.uri.resource_name, headers)

    def expect_accept(self) -> None:
        """Compute the Sec-WebSocket-Accept the response must carry, ahead of it.

        Optional: :meth:`process_response` computes it otherwise. A client
        calls it while the server works on the response, which then takes
        that much less time to check.
        """
        if self.key is None:
            raise InvalidState("request() must be called before expect_accept()")
        self._accept = accept_key(self.key)

    def process_response(
        self, response: Response
    ) -> tuple[list[Extension], str | None]:
        """Check the server's response and return what it negotiated.

        Args:
            response: The response to the last :meth:`request`.

        Returns:
            The accepted extensions, in the order the server gave them, and
            the subprotocol, or ``None`` if the server picked none.

        Raises:
            InvalidStatus: If the status isn't 101.
            InvalidUpgrade: If Upgrade isn't ``websocket`` or Connection
                doesn't list ``upgrade``.
            InvalidHeader: If Sec-WebSocket-Accept is missing or wrong, or a
                negotiation header is malformed.
            NegotiationError: If the server accepted an extension or a
                subprotocol that wasn't offered, or parameters the client
                can't accept.
            InvalidState: If :meth:`request` wasn't called.
        """
        if self.key is None:
            raise InvalidState("request() must be called before process_response()")
        # RFC 6455 §4.1: if the status code is not 101, handle the response
        # per HTTP; for us that means the handshake failed.
        if response.status_code != 101:
            raise InvalidStatus(response)
        headers = response.headers
        fields = headers._dict  # lower-case names: plain dict lookups
        # RFC 6455 §4.1: an Upgrade header that isn't "websocket"
        # (case-insensitively) or a Connection header without "Upgrade" MUST
        # fail the connection. The values nearly every server sends, matched
        # whole, need no parsing.
        if fields.get("upgrade") != ["websocket"]:
            protocols = _upgrade_protocols(headers)
            if [protocol.lower() for protocol in protocols] != ["websocket"]:
                raise InvalidUpgrade("Upgrade", _header_text(headers, "Upgrade"))
        if fields.get("connection") != ["Upgrade"] and not _has_connection_upgrade(
            headers
        ):
            raise InvalidUpgrade("Connection", _header_text(headers, "Connection"))
        # RFC 6455 §4.1: a Sec-WebSocket-Accept that isn't the base64 SHA-1
        # of the key and the GUID MUST fail the connection.
        accept = _single_value(headers, "Sec-WebSocket-Accept")
        if accept != (self._accept or accept_key(self.key)):
            raise InvalidHeader("Sec-WebSocket-Accept", accept)
        if "sec-websocket-extensions" in fields:
            extensions = self._accept_extensions(headers)
        else:
            extensions = []
        if "sec-websocket-protocol" in fields:
            subprotocol = self._accept_subprotocol(headers)
        else:
            subprotocol = None
        return extensions, subprotocol

    def _accept_extensions(self, headers: Headers) -> list[Extension]:
        """Build the extensions the server accepted.

        RFC 6455 §4.1: the response MUST NOT use an extension that the
        client didn't offer. Each extension of the response goes to the first
        offered factory of that name that accepts its parameters.
        """
        answered: list[tuple[str, list[ExtensionParameter]]] = []
        for value in headers.get_all("Sec-WebSocket-Extensions"):
            answered.extend(parse_extension(value))
        accepted: list[Extension] = []
        seen: set[str] = set()
        for name, params in answered:
            # The client offers alternatives for one extension; a server that
            # accepts the same extension twice would apply it twice.
            if name.lower() in seen:
                raise NegotiationError(f"extension {name} accepted twice")
            seen.add(name.lower())
            factories = [f for f in self.extensions if f.name.lower() == name.lower()]
            if not factories:
                raise NegotiationError(f"extension {name} wasn't offered")
            errors: list[str] = []
            for factory in factories:
                try:
                    extension = factory.process_response_params(params, accepted)
                except NegotiationError as exc:
                    errors.append(str(exc))
                    continue
                accepted.append(extension)
                break
            else:
                raise NegotiationError(
                    f"unacceptable parameters for extension {name}: "
                    + "; ".join(errors)
                )
        return accepted

    def _accept_subprotocol(self, headers: Headers) -> str | None:
        """Return the subprotocol the server picked, if any.

        RFC 6455 §4.1: a subprotocol that wasn't offered MUST fail the
        connection; RFC 6455 §4.2.2 lets the server pick one at most.
        """
        values = headers.get_all("Sec-WebSocket-Protocol")
        if not values:
            return None
        picked: list[str] = []
        for value in values:
            picked.extend(parse_subprotocol(value))
        if len(picked) > 1:
            raise InvalidHeader("Sec-WebSocket-Protocol", ", ".join(values))
        (subprotocol,) = picked
        if subprotocol not in self._offered_subprotocols:
            raise NegotiationError(f"subprotocol {subprotocol} wasn't offered")
        return subprotocol


@dataclasses.dataclass(frozen=True)
class Accepted:
    """What :meth:`ServerHandshake.accept` decided.

    Attributes:
        response: The response to send: a 101 on success, else an HTTP error.
        extensions: The negotiated extensions, in order of application.
        subprotocol: The negotiated subprotocol, or ``None``.
        error: Why the handshake failed, or ``None`` if it succeeded.
    """

    response: Response
    extensions: list[Extension]
    subprotocol: str | None
    error: InvalidHandshake | None = None


class _Rejection(Exception):
    """Internal: carries the HTTP error for a failed handshake check."""

    def __init__(self, status: int, error: InvalidHandshake, hint: str = "") -> None:
        super().__init__(status, error, hint)
        self.status = status
        self.error = error
        self.hint = hint


class ServerHandshake:
    """The server side of the opening handshake.

    Parse a request with :func:`~wssync.sansio.http11.parse_request`, then
    call :meth:`accept`, then send :attr:`Accepted.response`.

    Args:
        origins: Allowed values of the Origin header; ``None`` in the list
            allows requests without Origin, a compiled regex must match the
            whole origin. ``None`` (the default) allows any origin.
        extensions: Extensions the server supports.
        subprotocols: Subprotocols the server supports.
        select_subprotocol: Picks the subprotocol from the client's offers,
            instead of the default (the first offer the server supports).
            Returning ``None`` picks none.
        server_header: The Server header; ``None`` leaves it out.
    """

    def __init__(
        self,
        *,
        origins: Sequence[_OriginPattern] | None = None,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[Sequence[str]], str | None] | None = None,
        server_header: str | None = USER_AGENT,
    ) -> None:
        self.origins = None if origins is None else list(origins)
        self.extensions = list(extensions or ())
        self.subprotocols = list(subprotocols or ())
        self.select_subprotocol = select_subprotocol
        self.server_header = server_header

    def accept(self, request: Request) -> Accepted:
        """Check a handshake request and build the response.

        This never raises for a bad request: the error is in
        :attr:`Accepted.error` and :attr:`Accepted.response` is the HTTP
        error to send (400, 403, 405 or 426; 500 if ``select_subprotocol``
        picked a subprotocol the client didn't offer). Exceptions raised by
        ``select_subprotocol`` or by extension factories (other than
        NegotiationError) propagate.

        Args:
            request: The parsed request.

        Returns:
            The outcome of the handshake.
        """
        try:
            key = self._check_request(request)
            extension_header, extensions = self._negotiate_extensions(request.headers)
            subprotocol = self._negotiate_subprotocol(request.headers)
        except _Rejection as rejection:
            # A 500 is our fault: don't show the client what went wrong.
            reason = (
                "internal server error" if rejection.status == 500 else rejection.error
            )
            text = f"Failed to open a WebSocket connection: {reason}.\n"
            if rejection.hint:
                text += f"\n{rejection.hint}\n"
            response = self.reject(rejection.status, text)
            if (
                isinstance(rejection.error, InvalidHeader)
                and rejection.error.name == "Sec-WebSocket-Version"
            ):
                # RFC 6455 §4.4: tell the client which versions we speak.
                response.headers["Sec-WebSocket-Version"] = _VERSION
            return Accepted(response, [], None, rejection.error)

        headers = Headers()
        # Constants and base64: no need for Headers' checks.
        headers._add_trusted("Upgrade", "websocket")
        headers._add_trusted("Connection", "Upgrade")
        headers._add_trusted("Sec-WebSocket-Accept", accept_key(key))
        if extension_header is not None:
            headers["Sec-WebSocket-Extensions"] = extension_header
        if subprotocol is not None:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        if self.server_header is not None:
            headers["Server"] = self.server_header
        response = Response(101, "Switching Protocols", headers)
        return Accepted(response, extensions, subprotocol)

    def _check_request(self, request: Request) -> str:
        """Run the checks of RFC 6455 §4.2.1; return the client's key."""
        headers = request.headers
        # RFC 6455 §4.2.1 (1): an HTTP/1.1 or higher GET request.
        if request.method != "GET":
            raise _Rejection(405, InvalidMessage("HTTP method must be GET", 405))
        # RFC 6455 §4.2.1 (2): a Host header field.
        try:
            _single_value(headers, "Host")
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        # RFC 6455 §4.2.1 (3), (4): Upgrade lists "websocket" and Connection
        # lists "Upgrade", case-insensitively. RFC 7231 §6.5.15 answers a
        # request that must upgrade with 426 Upgrade Required; a malformed
        # header is a plain 400.
        try:
            protocols = _upgrade_protocols(headers)
            connection_ok = _has_connection_upgrade(headers)
        except InvalidUpgrade as exc:
            raise _Rejection(400, exc) from None
        if not any(protocol.lower() == "websocket" for protocol in protocols):
            error = InvalidUpgrade("Upgrade", _header_text(headers, "Upgrade"))
            raise _Rejection(426, error, _BROWSER_HINT)
        if not connection_ok:
            error = InvalidUpgrade("Connection", _header_text(headers, "Connection"))
            raise _Rejection(426, error, _BROWSER_HINT)
        # RFC 6455 §4.2.1 (5): a Sec-WebSocket-Key that decodes to 16 bytes.
        try:
            key = _single_value(headers, "Sec-WebSocket-Key")
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        try:
            raw_key = base64.b64decode(key.encode("latin-1"), validate=True)
        except binascii.Error:
            raw_key = b""
        if len(raw_key) != 16:
            raise _Rejection(400, InvalidHeader("Sec-WebSocket-Key", key))
        # RFC 6455 §4.2.1 (6): Sec-WebSocket-Version 13. A missing header is
        # a malformed request (400); another version gets 426 and the
        # versions we speak (RFC 6455 §4.4).
        try:
            version = _single_value(headers, "Sec-WebSocket-Version")
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        if version.strip() != _VERSION:
            raise _Rejection(426, InvalidHeader("Sec-WebSocket-Version", version))
        # RFC 6455 §4.2.2 and §10.2: a server that doesn't accept the origin
        # answers with an HTTP error such as 403 Forbidden.
        if self.origins is not None:
            self._check_origin(headers)
        return key

    def _check_origin(self, headers: Headers) -> None:
        """Reject an Origin that isn't allowed (RFC 6455 §10.2)."""
        origins = headers.get_all("Origin")
        if len(origins) > 1:
            raise _Rejection(400, InvalidHeader("Origin", ", ".join(origins)))
        origin = origins[0] if origins else None
        assert self.origins is not None
        for allowed in self.origins:
            if allowed is None or isinstance(allowed, str):
                if origin == allowed:
                    return
            elif origin is not None and allowed.fullmatch(origin):
                return
        raise _Rejection(403, InvalidOrigin(origin))

    def _negotiate_extensions(
        self, headers: Headers
    ) -> tuple[str | None, list[Extension]]:
        """Accept the client's extension offers that the server supports.

        RFC 6455 §9.1: the server accepts offers in the client's order and
        lists the accepted ones, in order of application, in its response.
        Only the first acceptable offer of each extension name is accepted:
        the client's further offers of it are fallbacks.
        """
        offers: list[tuple[str, list[ExtensionParameter]]] = []
        for value in headers.get_all("Sec-WebSocket-Extensions"):
            try:
                offers.extend(parse_extension(value))
            except InvalidHeader as exc:
                raise _Rejection(400, exc) from None
        if not offers or not self.extensions:
            return None, []
        accepted: list[Extension] = []
        answers: list[tuple[str, list[ExtensionParameter]]] = []
        accepted_names: set[str] = set()
        for name, params in offers:
            if name.lower() in accepted_names:
                continue
            for factory in self.extensions:
                if factory.name.lower() != name.lower():
                    continue
                try:
                    response_params, extension = factory.process_request_params(
                        params, accepted
                    )
                except NegotiationError:
                    continue
                accepted.append(extension)
                answers.append((factory.name, response_params))
                accepted_names.add(name.lower())
                break
        if not answers:
            return None, []
        return build_extension(answers), accepted

    def _negotiate_subprotocol(self, headers: Headers) -> str | None:
        """Pick the subprotocol, among the client's offers, if any.

        RFC 6455 §4.2.2: the server selects one of the client's values, or
        none.
        """
        offers: list[str] = []
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            try:
                offers.extend(parse_subprotocol(value))
            except InvalidHeader as exc:
                raise _Rejection(400, exc) from None
        if self.select_subprotocol is not None:
            subprotocol = self.select_subprotocol(offers)
            if subprotocol is not None and subprotocol not in offers:
                # A bug in the server application, not in the client.
                error = NegotiationError(
                    f"select_subprotocol picked {subprotocol!r}, "
                    "which the client didn't offer"
                )
                raise _Rejection(500, error)
            return subprotocol
        for offer in offers:
            if offer in self.subprotocols:
                return offer
        return None

    def reject(self, status: int, text: str) -> Response:
        """Build an HTTP error response with a plain text body.

        The response closes the connection. A 405 says ``Allow: GET``
        (RFC 7231 §6.5.5) and a 426 says ``Upgrade: websocket`` (RFC 7231
        §6.5.15), as those statuses require.

        Args:
            status: The HTTP status code, such as 403.
            text: The body, sent as UTF-8 ``text/plain``.

        Returns:
            The response; its headers may still be changed.
        """
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        body = text.encode()
        headers = Headers()
        if status == 426:
            # RFC 7230 §6.7: Upgrade is hop-by-hop, so Connection lists it.
            headers["Upgrade"] = "websocket"
            headers["Connection"] = "Upgrade, close"
        else:
            headers["Connection"] = "close"
        if status == 405:
            headers["Allow"] = "GET"
        headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = str(len(body))
        if self.server_header is not None:
            headers["Server"] = self.server_header
        return Response(status, reason, headers, body)
