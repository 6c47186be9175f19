"""Tests for wssync.sansio.uri: parsing WebSocket URIs and building Host headers."""

from __future__ import annotations

import dataclasses

import pytest

from wssync.exceptions import InvalidURI
from wssync.sansio.uri import WebSocketURI, build_host, parse_uri


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/", "")),
        ("ws://localhost", WebSocketURI(False, "localhost", 80, "/", "")),
        ("wss://localhost/", WebSocketURI(True, "localhost", 443, "/", "")),
        ("ws://localhost:8765", WebSocketURI(False, "localhost", 8765, "/", "")),
        ("wss://localhost:80/", WebSocketURI(True, "localhost", 80, "/", "")),
        ("WS://Example.COM/Path", WebSocketURI(False, "example.com", 80, "/Path", "")),
        (
            "ws://localhost/path?query",
            WebSocketURI(False, "localhost", 80, "/path", "query"),
        ),
        (
            "ws://localhost?a=1&b=2",
            WebSocketURI(False, "localhost", 80, "/", "a=1&b=2"),
        ),
        ("ws://localhost/?", WebSocketURI(False, "localhost", 80, "/", "")),
        ("ws://127.0.0.1:9000/x", WebSocketURI(False, "127.0.0.1", 9000, "/x", "")),
        ("ws://[::1]/", WebSocketURI(False, "::1", 80, "/", "")),
        (
            "wss://[2001:db8::1]:8443/x",
            WebSocketURI(True, "2001:db8::1", 8443, "/x", ""),
        ),
        (
            "ws://user:pass@localhost/",
            WebSocketURI(False, "localhost", 80, "/", "", ("user", "pass")),
        ),
        (
            "ws://us%40er:p%3Ass@localhost/",
            WebSocketURI(False, "localhost", 80, "/", "", ("us@er", "p:ss")),
        ),
        (
            "ws://user@localhost/",
            WebSocketURI(False, "localhost", 80, "/", "", ("user", "")),
        ),
        (
            "ws://user:@localhost/",
            WebSocketURI(False, "localhost", 80, "/", "", ("user", "")),
        ),
        # RFC 6455 §3: "#" escaped as %23 is fine.
        ("ws://localhost/a%23b", WebSocketURI(False, "localhost", 80, "/a%23b", "")),
    ],
)
def test_parse_uri(uri: str, parsed: WebSocketURI) -> None:
    assert parse_uri(uri) == parsed


def test_idna_host() -> None:
    assert parse_uri("ws://bücher.example/").host == "xn--bcher-kva.example"
    assert parse_uri("wss://пример.испытание/").host == "xn--e1afmkfd.xn--80akhbyknj4f"


def test_non_ascii_path_and_query_are_percent_encoded() -> None:
    uri = parse_uri("ws://localhost/ch at/é?q=é r&x=%20")
    assert uri.path == "/ch%20at/%C3%A9"
    assert uri.query == "q=%C3%A9%20r&x=%20"
    assert uri.resource_name == "/ch%20at/%C3%A9?q=%C3%A9%20r&x=%20"


def test_reserved_characters_are_kept() -> None:
    uri = parse_uri("ws://localhost/a:b@c/!$&'()*+,;=?k=v/w?x:y@z")
    assert uri.path == "/a:b@c/!$&'()*+,;="
    assert uri.query == "k=v/w?x:y@z"


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost/",
        "https://localhost/",
        "localhost:8765",
        "/chat",
        "",
        "ws:/localhost/",
        "ws://",
        "ws:///path",
        "ws://:8765/",
        "ws://localhost/#fragment",
        "ws://localhost/#",
        "ws://localhost:port/",
        "ws://localhost:99999/",
        "ws://localhost:0/",
        "ws://localhost:-1/",
        "ws://[::1/",
        "ws://[not-ipv6]/",
        "ws://exa mple.com/",
        "ws://exa<mple.com/",
        "ws://\udcff/",  # not encodable with IDNA
    ],
)
def test_parse_uri_invalid(uri: str) -> None:
    with pytest.raises(InvalidURI) as excinfo:
        parse_uri(uri)
    assert excinfo.value.uri == uri
    assert isinstance(excinfo.value, ValueError)


def test_resource_name() -> None:
    assert parse_uri("ws://h").resource_name == "/"
    assert parse_uri("ws://h/a/b").resource_name == "/a/b"
    assert parse_uri("ws://h/a?b=c").resource_name == "/a?b=c"


def test_default_port() -> None:
    assert parse_uri("ws://h").default_port
    assert parse_uri("wss://h").default_port
    assert parse_uri("ws://h:443").default_port is False
    assert parse_uri("wss://h:80").default_port is False


def test_parsed_uris_are_cached_without_credentials() -> None:
    # The cache is why parse_uri's result must be immutable (test_frozen).
    assert parse_uri("ws://cached.example/x") is parse_uri("ws://cached.example/x")
    with_password = "ws://user:secret@cached.example/x"
    first, second = parse_uri(with_password), parse_uri(with_password)
    assert first == second
    assert first is not second
    assert first.user_info == ("user", "secret")


def test_invalid_uri_raises_every_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidURI):
            parse_uri("http://cached.example/")


def test_frozen() -> None:
    uri = parse_uri("ws://h/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        uri.host = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "port", "secure", "value"),
    [
        ("example.com", 80, False, "example.com"),
        ("example.com", 443, True, "example.com"),
        ("example.com", 443, False, "example.com:443"),
        ("example.com", 80, True, "example.com:80"),
        ("example.com", 8765, False, "example.com:8765"),
        ("127.0.0.1", 9000, True, "127.0.0.1:9000"),
        ("::1", 80, False, "[::1]"),
        ("::1", 8765, False, "[::1]:8765"),
        ("[::1]", 8765, True, "[::1]:8765"),
    ],
)
def test_build_host(host: str, port: int, secure: bool, value: str) -> None:
    assert build_host(host, port, secure) == value


def test_build_host_from_parsed_uri() -> None:
    uri = parse_uri("wss://[2001:db8::1]:8443/")
    assert build_host(uri.host, uri.port, uri.secure) == "[2001:db8::1]:8443"
