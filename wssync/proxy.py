"""HTTP proxies for the client: a tunnel through ``CONNECT`` (RFC 9110 §9.3.6)."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.parse
import urllib.request
from typing import Union

from .exceptions import InvalidHandshake, InvalidMessage
from .sansio.headers import build_authorization_basic
from .sansio.http11 import MAX_HEAD_SIZE
from .sansio.uri import WebSocketURI, build_host
from .waiting import time_left

__all__ = ["ProxyOption", "open_tunnel", "proxy_for"]

# What a time-out interrupted, for its message.
_TUNNELING = "connecting through the proxy"

ProxyOption = Union[str, bool, None]

#: Bytes read per system call while waiting for the proxy's answer.
READ_SIZE = 4096


def proxy_for(wsuri: WebSocketURI, proxy: ProxyOption) -> str | None:
    """Return the proxy URL to reach ``wsuri`` through, or ``None`` to go direct.

    Args:
        wsuri: Where the client connects.
        proxy: ``True`` reads ``HTTPS_PROXY`` (for ``wss://``), ``HTTP_PROXY``
            (for ``ws://``) or ``ALL_PROXY`` from the environment and honours
            ``NO_PROXY``; a string is the proxy URL; ``None`` or ``False``
            means no proxy.
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy
    # Browsers and curl pick the proxy by the scheme the tunnel carries.
    url = _environment_proxy("https" if wsuri.secure else "http") or (
        _environment_proxy("all")
    )
    if url is None:
        return None
    no_proxy = _environment_proxy("no")
    if no_proxy is not None:
        # Documented in urllib.request's source, missing from typeshed.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if bypass(wsuri.host, {"no": no_proxy}):
            return None
    return url


def _environment_proxy(scheme: str) -> str | None:
    """Return ``<scheme>_proxy`` from the environment, as urllib reads it.

    The same answer as ``urllib.request.getproxies_environment()[scheme]``
    for lower- and upper-case names: the lower-case variable wins, even
    empty (which means "none"), and a CGI script (``REQUEST_METHOD`` set)
    ignores ``HTTP_PROXY``, which a client may set through a ``Proxy:``
    header (CVE-2016-1000110). It looks up the few names it needs instead
    of scanning the whole environment twice: that scan cost about 1 µs per
    environment variable, 36 µs of the 430 µs a ``connect()`` + ``close()``
    took with 35 variables. Mixed-case names (``Http_Proxy``) aren't read.
    """
    value = _getenv(f"{scheme}_proxy")
    if value is None:
        if scheme == "http" and _getenv("REQUEST_METHOD") is not None:
            return None
        value = _getenv(f"{scheme.upper()}_PROXY")
    return value or None


def _getenv(name: str) -> str | None:
    """``os.environ.get(name)``, at the cost of a dict lookup.

    A miss in ``os.environ.get()`` raises and catches two ``KeyError``:
    about 2 µs each in place, and a ``connect()`` without a proxy misses
    five names (10 µs of a 330 µs connect + close). CPython's
    ``os.environ`` keeps the variables in a dict of encoded names and
    values (``_data``), which it updates on every change: looked up there
    directly, with the name encoded as ``os.environ`` itself does. Any
    other mapping goes the public way.
    """
    environ = os.environ
    data = getattr(environ, "_data", None)
    if type(data) is not dict:
        return environ.get(name)
    try:
        key = _encoded_names[name]
    except KeyError:
        key = _encoded_names[name] = environ.encodekey(name)
    value = data.get(key)
    return None if value is None else environ.decodevalue(value)


#: Environment variable names as ``os.environ`` encodes them (bytes on
#: POSIX, upper case on Windows): the few that _getenv() is asked for.
_encoded_names: dict[str, object] = {}


def open_tunnel(
    proxy_url: str,
    wsuri: WebSocketURI,
    deadline: float | None,
    user_agent_header: str | None,
) -> socket.socket:
    """Connect to the proxy and ask it for a tunnel to the WebSocket server.

    Raises:
        ValueError: The proxy URL isn't an ``http://`` or ``https://`` one, or
            TLS through an ``https://`` proxy was asked for.
        InvalidHandshake: The proxy refused the tunnel.
        TimeoutError: The deadline passed.
    """
    parsed = urllib.parse.urlsplit(proxy_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"unsupported proxy: {proxy_url} (http:// or https:// only)")
    if parsed.scheme == "https" and wsuri.secure:
        # That needs TLS inside TLS (ssl.SSLObject over the proxy's TLS
        # stream), which this client's socket-based I/O doesn't do.
        raise ValueError("wss:// through an https:// proxy isn't supported")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    sock = socket.create_connection(
        (parsed.hostname, port), time_left(deadline, _TUNNELING)
    )
    try:
        if parsed.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=parsed.hostname)
        target = build_host(wsuri.host, wsuri.port, secure=False)
        if ":" not in target.rsplit("]", 1)[-1]:
            target = f"{target}:{wsuri.port}"  # CONNECT always names the port
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if parsed.username is not None:
            credentials = build_authorization_basic(
                urllib.parse.unquote(parsed.username),
                urllib.parse.unquote(parsed.password or ""),
            )
            lines.append(f"Proxy-Authorization: {credentials}")
        if user_agent_header is not None:
            lines.append(f"User-Agent: {user_agent_header}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        sock.settimeout(time_left(deadline, _TUNNELING))
        sock.sendall(request)
        _read_answer(sock, deadline, proxy_url)
    except socket.timeout as exc:
        sock.close()
        raise TimeoutError("timed out connecting through the proxy") from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _read_answer(sock: socket.socket, deadline: float | None, proxy_url: str) -> None:
    """Read the proxy's answer head; raise unless it opened the tunnel.

    Bytes after the head would belong to the tunnel (RFC 9110 §9.3.6), but
    none can come yet: neither a WebSocket server nor a TLS server speaks
    before the client. So reading whole chunks takes nothing from them.
    """
    head = bytearray()
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_HEAD_SIZE:
            raise InvalidMessage("proxy answer is too long", 431)
        sock.settimeout(time_left(deadline, _TUNNELING))
        chunk = sock.recv(READ_SIZE)
        if not chunk:
            raise InvalidHandshake("proxy closed the connection")
        head += chunk
    status_line = bytes(head).split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise InvalidMessage(f"invalid proxy answer: {status_line!r}")
    if not 200 <= int(parts[1]) < 300:
        raise InvalidHandshake(f"proxy {proxy_url} refused the tunnel: {status_line}")
