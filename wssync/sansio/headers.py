"""HTTP headers: a case-insensitive multi-dict and the WebSocket header grammars.

:class:`Headers` holds the header fields of a handshake request or response.
The functions below parse and build the values of the headers that the
opening handshake relies on (RFC 6455 §4 and §11.3, RFC 7230 §3.2.6 and §7,
RFC 7617), raising :class:`~wssync.exceptions.InvalidHeader` on bad input.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Callable, TypeVar, Union

from wssync.exceptions import InvalidHeader, MultipleValuesError

__all__ = [
    "ExtensionHeader",
    "ExtensionParameter",
    "Headers",
    "HeadersLike",
    "build_authorization_basic",
    "build_extension",
    "build_quoted_string",
    "build_subprotocol",
    "build_www_authenticate_basic",
    "is_token",
    "parse_authorization_basic",
    "parse_connection",
    "parse_extension",
    "parse_subprotocol",
    "parse_upgrade",
]

# RFC 7230 §3.2.6: token = 1*tchar, tchar = "!" / "#" / "$" / "%" / "&" / "'" /
# "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
_TOKEN_CHARS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")

# RFC 7230 §3.2: field-value = *( field-content / obs-fold ), made of VCHAR,
# SP, HTAB and obs-text (%x80-FF). CR, LF and NUL are what header injection
# needs, so they can never get into a Headers object.
_FIELD_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

# RFC 7230 §3.2.6: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE,
# qdtext = HTAB / SP / "!" / %x23-5B / %x5D-7E / obs-text,
# quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ).
_QUOTED_STRING_RE = re.compile(
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*)"'
)
_QUOTED_PAIR_RE = re.compile(r"\\([\t\x20-\x7e\x80-\xff])")
_QUOTE_NEEDED_RE = re.compile(r'([\\"])')

_T = TypeVar("_T")

# Parses one list element at a position of a header value, for a header name;
# returns the element and the position after it.
_ItemParser = Callable[[str, int, str], tuple[_T, int]]

# RFC 7230 §3.2.3: OWS = *( SP / HTAB ).
_OWS_RE = re.compile(r"[\t ]*")

ExtensionParameter = tuple[str, Union[str, None]]
"""One extension parameter: its name and its value, ``None`` without ``=``."""

ExtensionHeader = tuple[str, list[ExtensionParameter]]
"""One element of Sec-WebSocket-Extensions: the extension name and its parameters."""


class Headers(MutableMapping[str, str]):
    """A case-insensitive multi-dict of HTTP header fields.

    Names compare case-insensitively and keep the spelling they were given;
    the order of fields is preserved, which matters when a header appears
    several times (RFC 7230 §3.2.2).

    ``headers[name]`` returns the only value of a header, raising
    :exc:`KeyError` when it is missing and
    :exc:`~wssync.exceptions.MultipleValuesError` when it has several
    values; ``headers[name] = value`` *adds* a value; ``del headers[name]``
    removes every value; iteration yields each distinct name once, in the
    spelling of its first occurrence.

    Args:
        headers: Initial fields: a mapping, an iterable of ``(name, value)``
            pairs or another :class:`Headers`.
        **kwargs: More fields, added after ``headers``.

    Raises:
        ValueError: If a name is not an RFC 7230 token or a value contains a
            character not allowed in a header field (such as CR or LF).
    """

    __slots__ = ("_dict", "_list")

    def __init__(self, headers: HeadersLike | None = None, /, **kwargs: str) -> None:
        self._list: list[tuple[str, str]] = []
        self._dict: dict[str, list[str]] = {}
        if headers is not None:
            self.update(headers)
        if kwargs:
            self.update(kwargs)

    # Mapping API.

    def __getitem__(self, name: str) -> str:
        values = self._dict[name.lower()]
        if len(values) > 1:
            raise MultipleValuesError(name)
        return values[0]

    def __setitem__(self, name: str, value: str) -> None:
        if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"invalid header name: {name!r}")
        if not isinstance(value, str) or not _FIELD_VALUE_RE.fullmatch(value):
            raise ValueError(f"invalid value for header {name}: {value!r}")
        self._add_trusted(name, value)

    def _add_trusted(self, name: str, value: str) -> None:
        """Add a field built by the library from valid parts: no second check.

        The regular expressions of :meth:`__setitem__` cost more than the
        rest of building a handshake request or response.
        """
        self._dict.setdefault(name.lower(), []).append(value)
        self._list.append((name, value))

    @classmethod
    def _trusted(cls, fields: list[tuple[str, str]]) -> Headers:
        """Headers of fields that were checked already (see :meth:`_add_trusted`)."""
        headers = cls()
        by_name = headers._dict
        for name, value in fields:
            by_name.setdefault(name.lower(), []).append(value)
        headers._list = list(fields)
        return headers

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        del self._dict[key]
        self._list = [item for item in self._list if item[0].lower() != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._dict

    def __iter__(self) -> Iterator[str]:
        # Each distinct name once, spelled as it first appeared.
        seen: set[str] = set()
        for name, _ in self._list:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return len(self._dict)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._dict == other._dict
        if isinstance(other, Mapping):
            try:
                return self._dict == Headers(other)._dict
            except ValueError:  # not valid header fields: can't be equal
                return False
        return NotImplemented

    # MutableMapping defines __eq__, so __hash__ must stay None: Headers is
    # mutable and unhashable.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self._list!r})"

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\r\n" for name, value in self._list) + "\r\n"

    def __getstate__(self) -> list[tuple[str, str]]:
        return self._list

    def __setstate__(self, state: list[tuple[str, str]]) -> None:
        self._list = []
        self._dict = {}
        self.update(state)

    # Multi-dict API.

    def get_all(self, name: str) -> list[str]:
        """Return every value of a header, in order.

        Args:
            name: The header name, in any case.

        Returns:
            The values, an empty list when the header is missing.
        """
        return list(self._dict.get(name.lower(), ()))

    def raw_items(self) -> Iterator[tuple[str, str]]:
        """Iterate over every ``(name, value)`` field, in order, as spelled.

        Returns:
            An iterator over the fields, repeated names included.
        """
        return iter(self._list)

    def copy(self) -> Headers:
        """Return a shallow copy.

        Returns:
            A new :class:`Headers` with the same fields.
        """
        copy = self.__class__()
        copy._list = self._list.copy()
        copy._dict = {key: values.copy() for key, values in self._dict.items()}
        return copy

    def update(  # type: ignore[override]
        self, headers: HeadersLike = (), /, **kwargs: str
    ) -> None:
        """Add fields, keeping the existing ones (a multi-dict adds, never replaces).

        Args:
            headers: A mapping, an iterable of ``(name, value)`` pairs or a
                :class:`Headers`, whose every field is added.
            **kwargs: More fields to add.
        """
        items: Iterable[tuple[str, str]]
        if isinstance(headers, Headers):
            items = list(headers._list)
        elif isinstance(headers, Mapping):
            items = headers.items()
        else:
            items = headers
        for name, value in items:
            self[name] = value
        for name, value in kwargs.items():
            self[name] = value

    def clear(self) -> None:
        """Remove every field."""
        self._list = []
        self._dict = {}


HeadersLike = Union[
    Headers,
    Mapping[str, str],
    Iterable[tuple[str, str]],
]
"""Anything :class:`Headers` can be built from."""


# Generic pieces of RFC 7230 grammar.


def is_token(value: str) -> bool:
    """Tell whether a string is an RFC 7230 token.

    Args:
        value: The string to check.

    Returns:
        ``True`` if ``value`` is a non-empty sequence of tchar.
    """
    return _TOKEN_RE.fullmatch(value) is not None


def build_quoted_string(value: str) -> str:
    """Quote a string per RFC 7230 §3.2.6, escaping ``"`` and ``\\``.

    Args:
        value: The string to quote.

    Returns:
        The quoted string, double quotes included.

    Raises:
        ValueError: If ``value`` contains a character that no quoted-string
            may carry (a control character other than HTAB).
    """
    if not _FIELD_VALUE_RE.fullmatch(value):
        raise ValueError(f"cannot quote {value!r}")
    return '"' + _QUOTE_NEEDED_RE.sub(r"\\\1", value) + '"'


def _skip_ows(value: str, pos: int) -> int:
    """Return the position after optional whitespace at ``pos``."""
    match = _OWS_RE.match(value, pos)
    assert match is not None  # OWS matches the empty string
    return match.end()


def _parse_list_items(value: str, name: str, parse_item: _ItemParser[_T]) -> list[_T]:
    """Parse an RFC 7230 §7 ``1#element`` list.

    RFC 7230 §7: a recipient MUST accept and ignore empty list elements, so
    ``", , a ,b"`` is the list ``[a, b]``; but at least one element is
    required.
    """
    items: list[_T] = []
    pos = _skip_ows(value, 0)
    while pos < len(value):
        if value[pos] == ",":
            pos = _skip_ows(value, pos + 1)
            continue
        item, pos = parse_item(value, pos, name)
        items.append(item)
        pos = _skip_ows(value, pos)
        if pos < len(value):
            if value[pos] != ",":
                raise InvalidHeader(name, value)
            pos = _skip_ows(value, pos + 1)
    if not items:
        raise InvalidHeader(name, value)
    return items


def _parse_token(value: str, pos: int, name: str) -> tuple[str, int]:
    """Parse a token at ``pos``; return it and the position after it."""
    match = _TOKEN_RE.match(value, pos)
    if match is None:
        raise InvalidHeader(name, value)
    return match.group(), match.end()


def _parse_token_or_quoted(value: str, pos: int, name: str) -> tuple[str, int]:
    """Parse a token or a quoted-string at ``pos``; return its unquoted text."""
    if pos < len(value) and value[pos] == '"':
        match = _QUOTED_STRING_RE.match(value, pos)
        if match is None:
            raise InvalidHeader(name, value)
        return _QUOTED_PAIR_RE.sub(r"\1", match.group(1)), match.end()
    return _parse_token(value, pos, name)


# Connection and Upgrade.


def parse_connection(value: str) -> list[str]:
    """Parse a Connection header value into its connection options.

    RFC 7230 §6.1: ``Connection = 1#connection-option``, each a token.

    Args:
        value: One value of the Connection header.

    Returns:
        The options, as spelled (compare them case-insensitively).

    Raises:
        InvalidHeader: If the value is not a list of tokens.
    """
    return _parse_list_items(value, "Connection", _parse_token)


def _parse_protocol(value: str, pos: int, name: str) -> tuple[str, int]:
    """Parse ``protocol-name ["/" protocol-version]`` at ``pos``."""
    protocol, pos = _parse_token(value, pos, name)
    if pos < len(value) and value[pos] == "/":
        version, pos = _parse_token(value, pos + 1, name)
        protocol = f"{protocol}/{version}"
    return protocol, pos


def parse_upgrade(value: str) -> list[str]:
    """Parse an Upgrade header value into its protocols.

    RFC 7230 §6.7: ``Upgrade = 1#protocol``,
    ``protocol = protocol-name ["/" protocol-version]``, both tokens.

    Args:
        value: One value of the Upgrade header.

    Returns:
        The protocols, such as ``["websocket"]`` (compare them
        case-insensitively).

    Raises:
        InvalidHeader: If the value does not follow the grammar.
    """
    return _parse_list_items(value, "Upgrade", _parse_protocol)


# Sec-WebSocket-Extensions.


def _parse_extension_item(
    value: str, pos: int, name: str
) -> tuple[ExtensionHeader, int]:
    """Parse ``extension-token *( ";" extension-param )`` at ``pos``."""
    extension, pos = _parse_token(value, pos, name)
    params: list[ExtensionParameter] = []
    pos = _skip_ows(value, pos)
    while pos < len(value) and value[pos] == ";":
        pos = _skip_ows(value, pos + 1)
        param_name, pos = _parse_token(value, pos, name)
        param_value: str | None = None
        pos = _skip_ows(value, pos)
        if pos < len(value) and value[pos] == "=":
            pos = _skip_ows(value, pos + 1)
            param_value, pos = _parse_token_or_quoted(value, pos, name)
            # RFC 6455 §9.1: when the quoted-string syntax is used, the value
            # after unescaping MUST conform to the token ABNF.
            if not is_token(param_value):
                raise InvalidHeader(name, value)
            pos = _skip_ows(value, pos)
        params.append((param_name, param_value))
    return (extension, params), pos


def parse_extension(value: str) -> list[ExtensionHeader]:
    """Parse a Sec-WebSocket-Extensions header value.

    RFC 6455 §9.1::

        Sec-WebSocket-Extensions = extension-list
        extension-list = 1#extension
        extension = extension-token *( ";" extension-param )
        extension-param = token [ "=" (token | quoted-string) ]

    Args:
        value: One value of the header.

    Returns:
        The extensions in order, each as ``(name, [(param, value), ...])``
        where a parameter without ``=`` has the value ``None``.

    Raises:
        InvalidHeader: If the value does not follow the grammar.
    """
    return _parse_list_items(value, "Sec-WebSocket-Extensions", _parse_extension_item)


def build_extension(
    extensions: Sequence[tuple[str, Sequence[ExtensionParameter]]],
) -> str:
    """Build a Sec-WebSocket-Extensions header value.

    Args:
        extensions: The extensions in order, each as
            ``(name, [(param, value), ...])``; ``None`` values give bare
            parameters.

    Returns:
        The header value, such as
        ``"permessage-deflate; client_max_window_bits"``.

    Raises:
        ValueError: If a name or value is not a token (RFC 6455 §9.1).
    """
    elements = []
    for name, params in extensions:
        if not is_token(name):
            raise ValueError(f"invalid extension name: {name!r}")
        parts = [name]
        for param_name, param_value in params:
            if not is_token(param_name):
                raise ValueError(f"invalid extension parameter name: {param_name!r}")
            if param_value is None:
                parts.append(param_name)
            elif is_token(param_value):
                parts.append(f"{param_name}={param_value}")
            else:
                raise ValueError(f"invalid extension parameter value: {param_value!r}")
        elements.append("; ".join(parts))
    return ", ".join(elements)


# Sec-WebSocket-Protocol.


def parse_subprotocol(value: str) -> list[str]:
    """Parse a Sec-WebSocket-Protocol header value.

    RFC 6455 §4.3: ``Sec-WebSocket-Protocol-Client = 1#token``; the server
    answers with a single token.

    Args:
        value: One value of the header.

    Returns:
        The subprotocols, in order of preference.

    Raises:
        InvalidHeader: If the value is not a list of tokens.
    """
    return _parse_list_items(value, "Sec-WebSocket-Protocol", _parse_token)


def build_subprotocol(subprotocols: Sequence[str]) -> str:
    """Build a Sec-WebSocket-Protocol header value.

    Args:
        subprotocols: The subprotocols, in order of preference.

    Returns:
        The header value, such as ``"chat, superchat"``.

    Raises:
        ValueError: If a subprotocol is not a token or the list is empty.
    """
    if not subprotocols:
        raise ValueError("at least one subprotocol is required")
    for subprotocol in subprotocols:
        if not is_token(subprotocol):
            raise ValueError(f"invalid subprotocol: {subprotocol!r}")
    return ", ".join(subprotocols)


# HTTP Basic Authentication.


def build_authorization_basic(username: str, password: str) -> str:
    """Build an Authorization header value for HTTP Basic Authentication.

    RFC 7617 §2: the credentials are ``user-id ":" password`` encoded in
    UTF-8 (§2.1 ``charset="UTF-8"``), then in base64.

    Args:
        username: The user-id; it MUST NOT contain a colon (RFC 7617 §2).
        password: The password.

    Returns:
        The header value, such as ``"Basic dXNlcjpwYXNz"``.

    Raises:
        ValueError: If the username contains a colon.
    """
    if ":" in username:
        raise ValueError("a username for Basic auth cannot contain a colon")
    credentials = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def parse_authorization_basic(value: str) -> tuple[str, str]:
    """Parse an Authorization header value for HTTP Basic Authentication.

    Args:
        value: The header value, such as ``"Basic dXNlcjpwYXNz"``.

    Returns:
        The username and the password.

    Raises:
        InvalidHeader: If the scheme is not Basic or the credentials are not
            valid base64 of UTF-8 ``user-id:password``.
    """
    # RFC 7235 §2.1: credentials = auth-scheme [ 1*SP token68 ]; the scheme
    # is case-insensitive.
    scheme, _, token68 = value.partition(" ")
    token68 = token68.lstrip(" ")
    if scheme.lower() != "basic" or not token68:
        raise InvalidHeader("Authorization", value)
    try:
        credentials = base64.b64decode(token68, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidHeader("Authorization", value) from None
    username, colon, password = credentials.partition(":")
    if not colon:
        raise InvalidHeader("Authorization", value)
    return username, password


def build_www_authenticate_basic(realm: str) -> str:
    """Build a WWW-Authenticate header value asking for Basic Authentication.

    Args:
        realm: The protection space shown to the user (RFC 7235 §2.2).

    Returns:
        The header value, such as ``'Basic realm="chat", charset="UTF-8"'``.

    Raises:
        ValueError: If the realm contains a control character.
    """
    # RFC 7617 §2.1: charset="UTF-8" tells the client how we decode
    # non-ASCII credentials.
    return f'Basic realm={build_quoted_string(realm)}, charset="UTF-8"'
