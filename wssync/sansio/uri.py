"""WebSocket URIs: ``ws://`` and ``wss://`` (RFC 6455 §3).

:func:`parse_uri` checks a URI and splits it into what the client needs to
connect and to build its handshake request; :func:`build_host` makes the
value of the Host header.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import urllib.parse

from wssync.exceptions import InvalidURI

__all__ = ["WebSocketURI", "build_host", "parse_uri"]

# RFC 3986 §3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims ).
_REG_NAME_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=%]+")

# RFC 3986 §3.3 and §3.4: characters that may stay literal in a path and a
# query. "%" is kept so that existing percent-escapes are not escaped twice.
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = _SUB_DELIMS + ":@/%"
_QUERY_SAFE = _SUB_DELIMS + ":@/?%"


@dataclasses.dataclass(frozen=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    Attributes:
        secure: ``True`` for ``wss://``, ``False`` for ``ws://``.
        host: The host name, lower case and IDNA-encoded, or an IP address
            (IPv6 without brackets).
        port: The port, 80 or 443 unless the URI gives one.
        path: The percent-encoded path, ``"/"`` if the URI has none.
        query: The percent-encoded query, without ``?``; ``""`` if none.
        user_info: The ``(username, password)`` from the URI, decoded, or
            ``None``.
    """

    secure: bool
    host: str
    port: int
    path: str
    query: str
    user_info: tuple[str, str] | None = None

    @property
    def resource_name(self) -> str:
        """The request target of the handshake: path and query.

        RFC 6455 §3: ``resource-name = path [ "?" query ]``.
        """
        if self.query:
            return f"{self.path}?{self.query}"
        return self.path

    @property
    def default_port(self) -> bool:
        """Whether :attr:`port` is the scheme's default (80 or 443)."""
        return self.port == (443 if self.secure else 80)


def _idna_host(uri: str, host: str) -> str:
    """Return a host name in ASCII, IDNA-encoding it if needed."""
    if host.isascii():
        return host
    try:
        # The stdlib codec implements IDNA 2003 (RFC 3490); that is what
        # resolvers accept for the vast majority of names.
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidURI(uri, f"invalid international host name: {host}") from None


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and check a WebSocket URI.

    Args:
        uri: A ``ws://`` or ``wss://`` URI, such as ``"ws://localhost:8765/"``.

    Returns:
        The parsed URI. Non-ASCII host names are IDNA-encoded; non-ASCII
        characters and spaces in the path and query are percent-encoded.

    Raises:
        InvalidURI: If ``uri`` isn't a valid WebSocket URI: another scheme, a
            fragment, no host, a bad port or a bad host.
    """
    if "@" in uri:
        # Credentials aren't kept in the cache.
        return _parse_uri(uri)
    return _parse_uri_cached(uri)


def _parse_uri(uri: str) -> WebSocketURI:
    try:
        parsed = urllib.parse.urlsplit(uri)
        # .port raises ValueError for a port out of range or not a number.
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    # RFC 6455 §3: the scheme is "ws" or "wss", compared case-insensitively
    # (urlsplit lowers it).
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    # RFC 6455 §3: fragment identifiers MUST NOT be used in WebSocket URIs;
    # "#" must be escaped as %23.
    if "#" in uri:
        raise InvalidURI(uri, "fragments aren't allowed")
    host = parsed.hostname
    if not host:
        raise InvalidURI(uri, "no host")
    secure = parsed.scheme == "wss"
    if "[" in parsed.netloc:
        # RFC 3986 §3.2.2: an IP literal in brackets is an IPv6 address
        # (a zone ID after "%" is allowed by RFC 6874).
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidURI(uri, f"invalid IPv6 address: {host}") from None
    else:
        host = _idna_host(uri, host)
        if not _REG_NAME_RE.fullmatch(host):
            raise InvalidURI(uri, f"invalid host: {host}")
    if port is None:
        port = 443 if secure else 80
    elif port == 0:
        raise InvalidURI(uri, "port 0 can't be connected to")
    user_info = None
    if parsed.username is not None:
        # RFC 3986 §3.2.1: userinfo is percent-encoded; a missing password
        # is taken as empty, like an empty one ("user:@host").
        username = urllib.parse.unquote(parsed.username)
        password = urllib.parse.unquote(parsed.password or "")
        user_info = (username, password)
    path = urllib.parse.quote(parsed.path, safe=_PATH_SAFE) or "/"
    query = urllib.parse.quote(parsed.query, safe=_QUERY_SAFE)
    return WebSocketURI(secure, host, port, path, query, user_info)


# A client mostly connects to the same few URIs over and over, and parsing
# one (urlsplit, quote) costs more than a loopback TCP connect. The result is
# immutable; errors aren't cached.
_parse_uri_cached = functools.lru_cache(maxsize=64)(_parse_uri)


def build_host(host: str, port: int, secure: bool) -> str:
    """Build the value of a Host header.

    RFC 7230 §5.4: ``Host = uri-host [ ":" port ]``; the port is left out
    when it is the scheme's default, and IPv6 addresses are put in brackets.

    Args:
        host: A host name or an IP address (IPv6 with or without brackets).
        port: The TCP port.
        secure: Whether the scheme is ``wss`` (default port 443) rather than
            ``ws`` (default port 80).

    Returns:
        The Host header value, such as ``"example.com:8765"`` or ``"[::1]"``.
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port != (443 if secure else 80):
        host = f"{host}:{port}"
    return host
