"""Tests for wssync.sansio.headers: Headers and the header grammars."""

from __future__ import annotations

import pickle

import pytest

from wssync.exceptions import InvalidHeader, MultipleValuesError
from wssync.sansio.headers import (
    Headers,
    build_authorization_basic,
    build_extension,
    build_quoted_string,
    build_subprotocol,
    build_www_authenticate_basic,
    is_token,
    parse_authorization_basic,
    parse_connection,
    parse_extension,
    parse_subprotocol,
    parse_upgrade,
)

# Headers


def test_build_from_dict_pairs_headers_and_kwargs() -> None:
    from_dict = Headers({"Host": "a", "Origin": "b"})
    from_pairs = Headers([("Host", "a"), ("Origin", "b")])
    from_headers = Headers(from_pairs)
    from_kwargs = Headers(Host="a", Origin="b")
    assert from_dict == from_pairs == from_headers == from_kwargs
    assert list(from_headers.raw_items()) == [("Host", "a"), ("Origin", "b")]


def test_empty() -> None:
    headers = Headers()
    assert len(headers) == 0
    assert list(headers) == []
    assert str(headers) == "\r\n"


def test_getitem_is_case_insensitive() -> None:
    headers = Headers({"Sec-WebSocket-Key": "k"})
    assert headers["sec-websocket-key"] == "k"
    assert headers["SEC-WEBSOCKET-KEY"] == "k"


def test_getitem_missing_raises_key_error() -> None:
    with pytest.raises(KeyError):
        Headers()["Host"]


def test_getitem_multiple_values_raises() -> None:
    headers = Headers([("Cookie", "a=1"), ("cookie", "b=2")])
    with pytest.raises(MultipleValuesError):
        headers["Cookie"]
    # get() only swallows KeyError: several values aren't "missing".
    with pytest.raises(MultipleValuesError):
        headers.get("Cookie")


def test_setitem_adds() -> None:
    headers = Headers()
    headers["Set-Cookie"] = "a=1"
    headers["set-cookie"] = "b=2"
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert list(headers.raw_items()) == [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]
    assert len(headers) == 1


def test_delitem_removes_every_value() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    del headers["A"]
    assert "a" not in headers
    assert list(headers.raw_items()) == [("B", "2")]
    with pytest.raises(KeyError):
        del headers["A"]


def test_get_and_get_all() -> None:
    headers = Headers([("Host", "x")])
    assert headers.get("host") == "x"
    assert headers.get("Origin") is None
    assert headers.get("Origin", "default") == "default"
    assert headers.get_all("Origin") == []
    # get_all returns a copy.
    headers.get_all("Host").append("y")
    assert headers.get_all("Host") == ["x"]


def test_contains() -> None:
    headers = Headers({"Host": "x"})
    assert "host" in headers
    assert "Origin" not in headers
    assert 42 not in headers  # type: ignore[comparison-overlap]


def test_iteration_yields_distinct_names_in_first_spelling() -> None:
    headers = Headers([("X-A", "1"), ("Host", "h"), ("x-a", "2")])
    assert list(headers) == ["X-A", "Host"]
    assert len(headers) == 2
    assert list(headers.keys()) == ["X-A", "Host"]


def test_copy_is_independent() -> None:
    headers = Headers([("A", "1")])
    copy = headers.copy()
    copy["A"] = "2"
    copy["B"] = "3"
    assert headers.get_all("A") == ["1"]
    assert "B" not in headers
    assert copy.get_all("a") == ["1", "2"]


def test_update_adds_from_every_source() -> None:
    headers = Headers([("A", "1")])
    headers.update(Headers([("A", "2"), ("a", "3")]))
    headers.update({"B": "4"})
    headers.update([("C", "5")])
    headers.update(D="6")
    assert list(headers.raw_items()) == [
        ("A", "1"),
        ("A", "2"),
        ("a", "3"),
        ("B", "4"),
        ("C", "5"),
        ("D", "6"),
    ]


def test_update_from_itself() -> None:
    headers = Headers([("A", "1")])
    headers.update(headers)
    assert headers.get_all("A") == ["1", "1"]


def test_inherited_mutable_mapping_methods() -> None:
    headers = Headers([("A", "1")])
    assert headers.setdefault("A", "x") == "1"
    assert headers.setdefault("B", "2") == "2"
    assert headers.pop("B") == "2"
    assert "B" not in headers
    headers.clear()
    assert len(headers) == 0
    assert list(headers.raw_items()) == []


def test_equality() -> None:
    assert Headers([("A", "1"), ("B", "2")]) == Headers([("b", "2"), ("a", "1")])
    assert Headers([("A", "1"), ("A", "2")]) != Headers([("A", "2"), ("A", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "1"), ("A", "1")])
    assert Headers({"Host": "x"}) == {"host": "x"}
    assert Headers({"Host": "x"}) != {"Host": "y"}
    assert Headers() != [("A", "1")]
    assert Headers() != "A: 1"
    assert Headers({"A": "1"}) != {"not a token": "1"}


def test_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Headers())


def test_repr_and_str() -> None:
    headers = Headers([("Host", "x"), ("A", "1")])
    assert repr(headers) == "Headers([('Host', 'x'), ('A', '1')])"
    assert str(headers) == "Host: x\r\nA: 1\r\n\r\n"


def test_pickle() -> None:
    headers = Headers([("A", "1"), ("a", "2")])
    copy = pickle.loads(pickle.dumps(headers))
    assert copy == headers
    assert list(copy.raw_items()) == list(headers.raw_items())


@pytest.mark.parametrize(
    "name", ["", "Bad Name", "Bad:Name", "Host\r\nX-Injected", "Ünïcode", "(x)"]
)
def test_invalid_names_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        Headers()[name] = "x"


@pytest.mark.parametrize(
    "value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "nul\x00", "del\x7f", "€"]
)
def test_invalid_values_rejected(value: str) -> None:
    with pytest.raises(ValueError):
        Headers()["X"] = value


def test_non_str_rejected() -> None:
    with pytest.raises(ValueError):
        Headers()["X"] = 42  # type: ignore[assignment]
    with pytest.raises(ValueError):
        Headers()[42] = "x"  # type: ignore[index]


def test_allowed_values() -> None:
    headers = Headers()
    headers["X"] = ""
    headers["Y"] = "tab\tand space, visible !~ and Latin-1 obs-text é\xff"
    assert headers["y"].endswith("\xff")


# Grammar helpers


def test_is_token() -> None:
    assert is_token("permessage-deflate")
    assert is_token("!#$%&'*+-.^_`|~09AZaz")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token('"a"')
    assert not is_token("a/b")


def test_build_quoted_string() -> None:
    assert build_quoted_string("chat") == '"chat"'
    assert build_quoted_string('say "hi" \\o/') == r'"say \"hi\" \\o/"'
    with pytest.raises(ValueError):
        build_quoted_string("a\r\nb")


# Connection and Upgrade


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("Upgrade", ["Upgrade"]),
        ("keep-alive, Upgrade", ["keep-alive", "Upgrade"]),
        (" , ,upgrade ,  ", ["upgrade"]),  # RFC 7230 §7: empty elements ignored
        ("a,b", ["a", "b"]),
    ],
)
def test_parse_connection(value: str, parsed: list[str]) -> None:
    assert parse_connection(value) == parsed


@pytest.mark.parametrize("value", ["", ",", " , ", "keep alive", "up;grade", "a,,b c"])
def test_parse_connection_invalid(value: str) -> None:
    with pytest.raises(InvalidHeader) as excinfo:
        parse_connection(value)
    assert excinfo.value.name == "Connection"
    assert excinfo.value.value == value


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("websocket", ["websocket"]),
        ("WebSocket", ["WebSocket"]),
        ("h2c, websocket/13", ["h2c", "websocket/13"]),
        (
            "HTTP/2.0, SHTTP/1.3, IRC/6.9, RTA/x11",
            ["HTTP/2.0", "SHTTP/1.3", "IRC/6.9", "RTA/x11"],
        ),
    ],
)
def test_parse_upgrade(value: str, parsed: list[str]) -> None:
    assert parse_upgrade(value) == parsed


@pytest.mark.parametrize("value", ["", "websocket/", "/13", "web socket", "a/b/c"])
def test_parse_upgrade_invalid(value: str) -> None:
    with pytest.raises(InvalidHeader) as excinfo:
        parse_upgrade(value)
    assert excinfo.value.name == "Upgrade"


# Sec-WebSocket-Extensions


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("foo", [("foo", [])]),
        (
            "permessage-deflate; client_max_window_bits",
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            "permessage-deflate;server_max_window_bits=10 ; client_no_context_takeover",
            [
                (
                    "permessage-deflate",
                    [
                        ("server_max_window_bits", "10"),
                        ("client_no_context_takeover", None),
                    ],
                )
            ],
        ),
        (
            # RFC 6455 §9.1: a quoted value is unquoted, then must be a token.
            'permessage-deflate; server_max_window_bits="10", permessage-deflate',
            [
                ("permessage-deflate", [("server_max_window_bits", "10")]),
                ("permessage-deflate", []),
            ],
        ),
        ('x; a = "1\\0"', [("x", [("a", "10")])]),
        (
            "mux; max-channels=4; flow-control, deflate-stream",
            [
                ("mux", [("max-channels", "4"), ("flow-control", None)]),
                ("deflate-stream", []),
            ],
        ),
        (", a ,, b;c ,", [("a", []), ("b", [("c", None)])]),
    ],
)
def test_parse_extension(value: str, parsed: list[object]) -> None:
    assert parse_extension(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",",
        "a;",
        "a; b=",
        "a; =b",
        "a b",
        'a; b="c d"',  # unquoted value isn't a token
        'a; b=""',
        'a; b="unterminated',
        "a; b=c d",
        '"a"',
        "a; b=c=d",
    ],
)
def test_parse_extension_invalid(value: str) -> None:
    with pytest.raises(InvalidHeader) as excinfo:
        parse_extension(value)
    assert excinfo.value.name == "Sec-WebSocket-Extensions"


def test_build_extension() -> None:
    value = build_extension(
        [
            ("permessage-deflate", [("client_max_window_bits", None), ("x", "15")]),
            ("foo", []),
        ]
    )
    assert value == "permessage-deflate; client_max_window_bits; x=15, foo"
    assert parse_extension(value) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("x", "15")]),
        ("foo", []),
    ]


@pytest.mark.parametrize(
    "extensions",
    [
        [("bad name", [])],
        [("x", [("bad name", None)])],
        [("x", [("a", "b c")])],
        [("x", [("a", "")])],
    ],
)
def test_build_extension_invalid(
    extensions: list[tuple[str, list[tuple[str, str | None]]]],
) -> None:
    with pytest.raises(ValueError):
        build_extension(extensions)


# Sec-WebSocket-Protocol


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("chat", ["chat"]),
        ("chat, superchat", ["chat", "superchat"]),
        ("a,b ,", ["a", "b"]),
    ],
)
def test_parse_subprotocol(value: str, parsed: list[str]) -> None:
    assert parse_subprotocol(value) == parsed


@pytest.mark.parametrize("value", ["", ",", "chat room", "chat/1", '"chat"'])
def test_parse_subprotocol_invalid(value: str) -> None:
    with pytest.raises(InvalidHeader) as excinfo:
        parse_subprotocol(value)
    assert excinfo.value.name == "Sec-WebSocket-Protocol"


def test_build_subprotocol() -> None:
    assert build_subprotocol(["chat", "superchat"]) == "chat, superchat"
    assert parse_subprotocol(build_subprotocol(["a", "b"])) == ["a", "b"]
    with pytest.raises(ValueError):
        build_subprotocol([])
    with pytest.raises(ValueError):
        build_subprotocol(["chat room"])


# Basic auth


def test_build_authorization_basic() -> None:
    # RFC 7617 §2 example.
    assert build_authorization_basic("Aladdin", "open sesame") == (
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    )
    # RFC 7617 §2.1: UTF-8.
    assert build_authorization_basic("test", "123£") == "Basic dGVzdDoxMjPCow=="


def test_build_authorization_basic_rejects_colon_in_username() -> None:
    with pytest.raises(ValueError):
        build_authorization_basic("a:b", "c")


@pytest.mark.parametrize(
    ("username", "password"),
    [("Aladdin", "open sesame"), ("ünï", "p:a:ss"), ("", ""), ("u", "")],
)
def test_authorization_basic_round_trip(username: str, password: str) -> None:
    value = build_authorization_basic(username, password)
    assert parse_authorization_basic(value) == (username, password)


def test_parse_authorization_basic_scheme_is_case_insensitive() -> None:
    assert parse_authorization_basic("basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==") == (
        "Aladdin",
        "open sesame",
    )


@pytest.mark.parametrize(
    "value",
    [
        "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic QWxhZGRpbg==",  # "Aladdin": no colon
        "Basic /w==",  # b"\xff": not UTF-8
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== extra",
    ],
)
def test_parse_authorization_basic_invalid(value: str) -> None:
    with pytest.raises(InvalidHeader) as excinfo:
        parse_authorization_basic(value)
    assert excinfo.value.name == "Authorization"


def test_build_www_authenticate_basic() -> None:
    assert build_www_authenticate_basic("chat") == 'Basic realm="chat", charset="UTF-8"'
    assert build_www_authenticate_basic('a "b"') == (
        'Basic realm="a \\"b\\"", charset="UTF-8"'
    )
    with pytest.raises(ValueError):
        build_www_authenticate_basic("a\nb")
