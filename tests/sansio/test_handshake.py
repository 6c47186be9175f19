"""Tests for wssync.sansio.handshake: both sides of the opening handshake."""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Sequence

import pytest

from wssync.exceptions import (
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from wssync.sansio.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from wssync.sansio.frames import Frame
from wssync.sansio.handshake import (
    USER_AGENT,
    Accepted,
    ClientHandshake,
    ServerHandshake,
    accept_key,
    generate_key,
)
from wssync.sansio.headers import Headers
from wssync.sansio.http11 import Request, Response, parse_request, parse_response
from wssync.sansio.uri import parse_uri
from wssync.version import __version__

Params = list[tuple[str, "str | None"]]

# RFC 6455 §1.3.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# Tiny extension factories: just enough to drive negotiation.


class FakeExtension(Extension):
    def __init__(self, name: str, params: Sequence[tuple[str, str | None]]) -> None:
        self.name = name
        self.params = list(params)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame

    def __repr__(self) -> str:
        return f"FakeExtension({self.name!r}, {self.params!r})"


class FakeClientFactory(ClientExtensionFactory):
    """Offers ``offer``; accepts a response whose params are in ``acceptable``."""

    def __init__(
        self, name: str, offer: Params, acceptable: Sequence[Params] | None = None
    ) -> None:
        self.name = name
        self.offer = offer
        self.acceptable = [offer] if acceptable is None else list(acceptable)
        self.seen_accepted: list[list[Extension]] = []

    def get_request_params(self) -> Params:
        return list(self.offer)

    def process_response_params(
        self,
        params: Sequence[tuple[str, str | None]],
        accepted_extensions: Sequence[Extension],
    ) -> Extension:
        self.seen_accepted.append(list(accepted_extensions))
        if list(params) not in self.acceptable:
            raise NegotiationError(f"unexpected params {params}")
        return FakeExtension(self.name, params)


class FakeServerFactory(ServerExtensionFactory):
    """Accepts offers whose params are keys of ``answers``, answering the value."""

    def __init__(
        self, name: str, answers: dict[tuple[tuple[str, str | None], ...], Params]
    ) -> None:
        self.name = name
        self.answers = answers
        self.seen_accepted: list[list[Extension]] = []

    def process_request_params(
        self,
        params: Sequence[tuple[str, str | None]],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[tuple[str, str | None]], Extension]:
        self.seen_accepted.append(list(accepted_extensions))
        try:
            answer = self.answers[tuple(params)]
        except KeyError:
            raise NegotiationError(f"declined {params}") from None
        return answer, FakeExtension(self.name, answer)


def rfc_request(**headers: str) -> Request:
    """The request of RFC 6455 §1.2, with headers replaced or removed ("")."""
    fields = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Origin": "http://example.com",
        "Sec-WebSocket-Protocol": "chat, superchat",
        "Sec-WebSocket-Version": "13",
    }
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    return Request("/chat", Headers({k: v for k, v in fields.items() if v}))


def with_headers(request: Request, *pairs: tuple[str, str]) -> Request:
    headers = request.headers.copy()
    headers.update(pairs)
    return Request(request.path, headers, request.method)


# Keys


def test_accept_key_rfc_example() -> None:
    # RFC 6455 §1.3.
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_generate_key() -> None:
    key = generate_key()
    assert len(key) == 24
    assert len(base64.b64decode(key, validate=True)) == 16
    assert len({generate_key() for _ in range(100)}) == 100


def test_generate_key_draws_from_the_random_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 16 bytes per key from the process's pool of os.urandom() bytes, not a
    # getrandom() call per connection; never the same key twice.
    import os

    from wssync.sansio import frames

    calls: list[int] = []
    real_urandom = os.urandom

    def counting_urandom(n: int) -> bytes:
        calls.append(n)
        return real_urandom(n)

    monkeypatch.setattr(frames, "_keys", [])
    monkeypatch.setattr(os, "urandom", counting_urandom)
    keys = [generate_key() for _ in range(64)]
    assert len(set(keys)) == 64
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)
    # 64 keys of 16 bytes: 1,024 bytes, drawn 256 at a time.
    assert calls == [256] * 4


def test_user_agent() -> None:
    python = f"Python/{sys.version_info.major}.{sys.version_info.minor}"
    assert f"wssync/{__version__} {python}" == USER_AGENT


# Client: the request


def test_client_request_defaults() -> None:
    client = ClientHandshake(parse_uri("ws://example.com:8765/chat?room=1"))
    request = client.request()
    assert request.method == "GET"
    assert request.path == "/chat?room=1"
    headers = request.headers
    assert [name for name, _ in headers.raw_items()] == [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "User-Agent",
    ]
    assert headers["Host"] == "example.com:8765"
    assert headers["Upgrade"] == "websocket"
    assert headers["Connection"] == "Upgrade"
    assert headers["Sec-WebSocket-Key"] == client.key
    assert headers["Sec-WebSocket-Version"] == "13"
    assert headers["User-Agent"] == USER_AGENT


def test_client_request_has_fresh_key_each_time() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    first = client.request().headers["Sec-WebSocket-Key"]
    second = client.request().headers["Sec-WebSocket-Key"]
    assert first != second
    assert client.key == second


def test_client_request_host_default_port_and_ipv6() -> None:
    assert ClientHandshake(parse_uri("wss://h/")).request().headers["Host"] == "h"
    request = ClientHandshake(parse_uri("ws://[::1]:9000/")).request()
    assert request.headers["Host"] == "[::1]:9000"


def test_client_request_options() -> None:
    client = ClientHandshake(
        parse_uri("wss://alice:s%3Acret@h/"),
        origin="https://h",
        extensions=[
            FakeClientFactory("x-one", [("a", None), ("b", "2")]),
            FakeClientFactory("x-two", []),
        ],
        subprotocols=["chat", "superchat"],
        additional_headers={"X-Extra": "1"},
        user_agent_header="custom/1.0",
    )
    headers = client.request().headers
    assert headers["Origin"] == "https://h"
    assert headers["Sec-WebSocket-Extensions"] == "x-one; a; b=2, x-two"
    assert headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert headers["Authorization"] == "Basic " + base64.b64encode(
        b"alice:s:cret"
    ).decode("ascii")
    assert headers["X-Extra"] == "1"
    assert headers["User-Agent"] == "custom/1.0"


def test_client_request_without_user_agent() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), user_agent_header=None)
    assert "User-Agent" not in client.request().headers


@pytest.mark.parametrize(
    "additional_headers",
    [
        {
            "Host": "proxy.example",
            "User-Agent": "me",
            "Origin": "o",
            "Authorization": "Bearer t",
        },
        [
            ("host", "proxy.example"),
            ("user-agent", "me"),
            ("origin", "o"),
            ("authorization", "Bearer t"),
        ],
        Headers(
            {
                "HOST": "proxy.example",
                "USER-AGENT": "me",
                "ORIGIN": "o",
                "AUTHORIZATION": "Bearer t",
            }
        ),
    ],
)
def test_client_additional_headers_replace_defaults(additional_headers: object) -> None:
    client = ClientHandshake(
        parse_uri("ws://u:p@h/"),
        origin="https://h",
        additional_headers=additional_headers,  # type: ignore[arg-type]
    )
    headers = client.request().headers
    assert headers["Host"] == "proxy.example"
    assert headers["User-Agent"] == "me"
    assert headers["Origin"] == "o"
    assert headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize(
    "name", ["Upgrade", "connection", "Sec-WebSocket-Key", "sec-websocket-version"]
)
def test_client_additional_headers_cannot_set_protocol_headers(name: str) -> None:
    with pytest.raises(ValueError):
        ClientHandshake(parse_uri("ws://h/"), additional_headers={name: "x"})


def test_client_rejects_invalid_subprotocol() -> None:
    with pytest.raises(ValueError):
        ClientHandshake(parse_uri("ws://h/"), subprotocols=["not a token"])


def test_client_request_round_trips_through_http11() -> None:
    request = ClientHandshake(parse_uri("ws://h/x"), subprotocols=["chat"]).request()
    data = request.serialize()
    assert parse_request(data) == (request, len(data))


# Client: the response


def accepting_response(client: ClientHandshake, *extra: tuple[str, str]) -> Response:
    """A valid 101 for the client's last request, plus extra headers."""
    assert client.key is not None
    headers = Headers(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(client.key)),
            *extra,
        ]
    )
    return Response(101, "Switching Protocols", headers)


def replace_header(response: Response, name: str, *values: str) -> Response:
    headers = response.headers.copy()
    if name in headers:
        del headers[name]
    for value in values:
        headers[name] = value
    return Response(response.status_code, response.reason_phrase, headers)


def test_client_accepts_valid_response() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    assert client.process_response(accepting_response(client)) == ([], None)


def test_client_process_response_before_request() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    with pytest.raises(InvalidState):
        client.process_response(Response(101, "Switching Protocols", Headers()))


@pytest.mark.parametrize("status", [200, 301, 400, 403, 426, 500, 503])
def test_client_rejects_non_101(status: int) -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    response = Response(status, "Nope", Headers(), b"body")
    with pytest.raises(InvalidStatus) as excinfo:
        client.process_response(response)
    assert excinfo.value.response is response


@pytest.mark.parametrize(
    ("name", "values", "error"),
    [
        ("Upgrade", (), InvalidUpgrade("Upgrade", None)),
        ("Upgrade", ("h2c",), InvalidUpgrade("Upgrade", "h2c")),
        ("Upgrade", ("websocket, h2c",), InvalidUpgrade("Upgrade", "websocket, h2c")),
        (
            "Upgrade",
            ("websocket", "websocket"),
            InvalidUpgrade("Upgrade", "websocket, websocket"),
        ),
        ("Upgrade", ("websocket/",), InvalidUpgrade("Upgrade", "websocket/")),
        ("Connection", (), InvalidUpgrade("Connection", None)),
        ("Connection", ("close",), InvalidUpgrade("Connection", "close")),
        ("Connection", ("up grade",), InvalidUpgrade("Connection", "up grade")),
        ("Sec-WebSocket-Accept", (), InvalidHeader("Sec-WebSocket-Accept", None)),
        (
            "Sec-WebSocket-Accept",
            (RFC_ACCEPT,),
            InvalidHeader("Sec-WebSocket-Accept", RFC_ACCEPT),
        ),
    ],
)
def test_client_rejects_invalid_headers(
    name: str, values: tuple[str, ...], error: InvalidHeader
) -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    response = replace_header(accepting_response(client), name, *values)
    with pytest.raises(InvalidHeader) as excinfo:
        client.process_response(response)
    assert type(excinfo.value) is type(error)
    assert excinfo.value.args == error.args


def test_client_rejects_repeated_accept() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    response = accepting_response(client)
    response.headers["Sec-WebSocket-Accept"] = response.headers["Sec-WebSocket-Accept"]
    with pytest.raises(InvalidHeader):
        client.process_response(response)


def test_client_checks_accept_against_latest_key() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    stale = accepting_response(client)
    client.request()
    with pytest.raises(InvalidHeader):
        client.process_response(stale)


def test_client_checks_accept_computed_ahead() -> None:
    # expect_accept() computes, while the server answers, what
    # process_response() checks: the same verdicts.
    client = ClientHandshake(parse_uri("ws://h/"))
    with pytest.raises(InvalidState):
        client.expect_accept()
    client.request()
    client.expect_accept()
    assert client.process_response(accepting_response(client)) == ([], None)
    wrong = replace_header(
        accepting_response(client), "Sec-WebSocket-Accept", RFC_ACCEPT
    )
    with pytest.raises(InvalidHeader):
        client.process_response(wrong)
    # A new request forgets the accept computed for the previous key.
    stale = accepting_response(client)
    client.request()
    with pytest.raises(InvalidHeader):
        client.process_response(stale)
    client.expect_accept()
    with pytest.raises(InvalidHeader):
        client.process_response(stale)


def test_client_header_checks_are_case_insensitive() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    response = replace_header(accepting_response(client), "Upgrade", "WebSocket")
    response = replace_header(response, "Connection", "keep-alive, UPGRADE")
    assert client.process_response(response) == ([], None)


# Client: extensions


def test_client_accepts_offered_extensions_in_response_order() -> None:
    one = FakeClientFactory("x-one", [("a", None)])
    two = FakeClientFactory("x-two", [])
    client = ClientHandshake(parse_uri("ws://h/"), extensions=[one, two])
    client.request()
    response = accepting_response(
        client,
        ("Sec-WebSocket-Extensions", "x-two"),
        ("Sec-WebSocket-Extensions", "x-one; a"),
    )
    extensions, _ = client.process_response(response)
    assert [(e.name, e.params) for e in extensions] == [  # type: ignore[attr-defined]
        ("x-two", []),
        ("x-one", [("a", None)]),
    ]
    # Each factory saw what was accepted before it.
    assert one.seen_accepted == [[extensions[0]]]
    assert two.seen_accepted == [[]]


def test_client_rejects_extension_not_offered() -> None:
    client = ClientHandshake(
        parse_uri("ws://h/"), extensions=[FakeClientFactory("x-one", [])]
    )
    client.request()
    response = accepting_response(client, ("Sec-WebSocket-Extensions", "x-other"))
    with pytest.raises(NegotiationError):
        client.process_response(response)


def test_client_rejects_extension_when_none_offered() -> None:
    client = ClientHandshake(parse_uri("ws://h/"))
    client.request()
    response = accepting_response(
        client, ("Sec-WebSocket-Extensions", "permessage-deflate")
    )
    with pytest.raises(NegotiationError):
        client.process_response(response)


def test_client_rejects_unacceptable_params() -> None:
    client = ClientHandshake(
        parse_uri("ws://h/"), extensions=[FakeClientFactory("x-one", [("a", "1")])]
    )
    client.request()
    response = accepting_response(client, ("Sec-WebSocket-Extensions", "x-one; a=2"))
    with pytest.raises(NegotiationError):
        client.process_response(response)


def test_client_tries_each_offer_of_an_extension() -> None:
    first = FakeClientFactory("x-one", [("a", "1")])
    second = FakeClientFactory("x-one", [("a", "2")])
    client = ClientHandshake(parse_uri("ws://h/"), extensions=[first, second])
    assert (
        client.request().headers["Sec-WebSocket-Extensions"] == "x-one; a=1, x-one; a=2"
    )
    response = accepting_response(client, ("Sec-WebSocket-Extensions", "x-one; a=2"))
    extensions, _ = client.process_response(response)
    assert [e.params for e in extensions] == [[("a", "2")]]  # type: ignore[attr-defined]


def test_client_rejects_extension_accepted_twice() -> None:
    first = FakeClientFactory("x-one", [("a", "1")])
    second = FakeClientFactory("x-one", [("a", "2")])
    client = ClientHandshake(parse_uri("ws://h/"), extensions=[first, second])
    client.request()
    response = accepting_response(
        client, ("Sec-WebSocket-Extensions", "x-one; a=1, x-one; a=2")
    )
    with pytest.raises(NegotiationError):
        client.process_response(response)


def test_client_rejects_malformed_extensions_header() -> None:
    client = ClientHandshake(
        parse_uri("ws://h/"), extensions=[FakeClientFactory("x", [])]
    )
    client.request()
    response = accepting_response(client, ("Sec-WebSocket-Extensions", "x; a="))
    with pytest.raises(InvalidHeader):
        client.process_response(response)


# Client: subprotocols


def test_client_accepts_offered_subprotocol() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), subprotocols=["chat", "superchat"])
    client.request()
    response = accepting_response(client, ("Sec-WebSocket-Protocol", "superchat"))
    assert client.process_response(response) == ([], "superchat")


def test_client_accepts_no_subprotocol() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), subprotocols=["chat"])
    client.request()
    assert client.process_response(accepting_response(client)) == ([], None)


@pytest.mark.parametrize("subprotocols", [["chat"], []])
def test_client_rejects_subprotocol_not_offered(subprotocols: list[str]) -> None:
    client = ClientHandshake(parse_uri("ws://h/"), subprotocols=subprotocols)
    client.request()
    response = accepting_response(client, ("Sec-WebSocket-Protocol", "other"))
    with pytest.raises(NegotiationError):
        client.process_response(response)


@pytest.mark.parametrize(
    "values", [("chat, superchat",), ("chat", "superchat"), ("not a token",)]
)
def test_client_rejects_invalid_subprotocol_header(values: tuple[str, ...]) -> None:
    client = ClientHandshake(parse_uri("ws://h/"), subprotocols=["chat", "superchat"])
    client.request()
    response = accepting_response(
        client, *[("Sec-WebSocket-Protocol", v) for v in values]
    )
    with pytest.raises(InvalidHeader):
        client.process_response(response)


def test_client_accepts_subprotocol_offered_in_additional_headers() -> None:
    client = ClientHandshake(
        parse_uri("ws://h/"),
        additional_headers={"Sec-WebSocket-Protocol": "graphql-ws"},
    )
    client.request()
    response = accepting_response(client, ("Sec-WebSocket-Protocol", "graphql-ws"))
    assert client.process_response(response) == ([], "graphql-ws")


# Server: success


def test_server_accepts_rfc_example() -> None:
    server = ServerHandshake()
    accepted = server.accept(rfc_request())
    assert isinstance(accepted, Accepted)
    assert accepted.error is None
    assert accepted.extensions == []
    assert accepted.subprotocol is None
    response = accepted.response
    assert response.status_code == 101
    assert response.reason_phrase == "Switching Protocols"
    assert list(response.headers.raw_items()) == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", RFC_ACCEPT),
        ("Server", USER_AGENT),
    ]
    assert response.body == b""


def test_server_without_server_header() -> None:
    response = ServerHandshake(server_header=None).accept(rfc_request()).response
    assert "Server" not in response.headers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Upgrade", "WebSocket"),
        ("Upgrade", "h2c, websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Connection", "upgrade"),
    ],
)
def test_server_accepts_header_variants(name: str, value: str) -> None:
    accepted = ServerHandshake().accept(rfc_request(**{name: value}))
    assert accepted.error is None
    assert accepted.response.status_code == 101


# Server: rejections


@pytest.mark.parametrize(
    ("request_", "status", "error_type"),
    [
        (Request("/", rfc_request().headers, "POST"), 405, InvalidMessage),
        (rfc_request(Host=""), 400, InvalidHeader),
        (with_headers(rfc_request(), ("Host", "other")), 400, InvalidHeader),
        (rfc_request(Upgrade=""), 426, InvalidUpgrade),
        (rfc_request(Upgrade="h2c"), 426, InvalidUpgrade),
        (rfc_request(Upgrade="websocket/"), 400, InvalidUpgrade),
        (rfc_request(Connection=""), 426, InvalidUpgrade),
        (rfc_request(Connection="keep-alive"), 426, InvalidUpgrade),
        (rfc_request(Connection="keep alive"), 400, InvalidUpgrade),
        (rfc_request(Sec_WebSocket_Key=""), 400, InvalidHeader),
        (
            with_headers(rfc_request(), ("Sec-WebSocket-Key", RFC_KEY)),
            400,
            InvalidHeader,
        ),
        (rfc_request(Sec_WebSocket_Key="not base64!"), 400, InvalidHeader),
        (rfc_request(Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZQ"), 400, InvalidHeader),
        (rfc_request(Sec_WebSocket_Key="c2hvcnQ="), 400, InvalidHeader),
        (
            rfc_request(Sec_WebSocket_Key=base64.b64encode(b"x" * 17).decode()),
            400,
            InvalidHeader,
        ),
        (rfc_request(Sec_WebSocket_Version=""), 400, InvalidHeader),
        (
            with_headers(rfc_request(), ("Sec-WebSocket-Version", "13")),
            400,
            InvalidHeader,
        ),
        (rfc_request(Sec_WebSocket_Version="8"), 426, InvalidHeader),
        (rfc_request(Sec_WebSocket_Version="13, 8"), 426, InvalidHeader),
        (rfc_request(Sec_WebSocket_Extensions="x; a="), 400, InvalidHeader),
        (rfc_request(Sec_WebSocket_Protocol="chat room"), 400, InvalidHeader),
    ],
)
def test_server_rejects(
    request_: Request, status: int, error_type: type[Exception]
) -> None:
    accepted = ServerHandshake().accept(request_)
    assert type(accepted.error) is error_type
    assert accepted.extensions == []
    assert accepted.subprotocol is None
    response = accepted.response
    assert response.status_code == status
    assert "Connection" in response.headers
    assert "close" in response.headers["Connection"]
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.body.startswith(b"Failed to open a WebSocket connection: ")
    assert str(accepted.error).encode() in response.body


def test_server_426_for_missing_upgrade_tells_what_to_do() -> None:
    response = ServerHandshake().accept(rfc_request(Upgrade="", Connection="")).response
    assert response.status_code == 426
    assert response.reason_phrase == "Upgrade Required"
    # RFC 7231 §6.5.15: a 426 MUST carry Upgrade; RFC 7230 §6.7: and
    # Connection must list it.
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Connection"] == "Upgrade, close"
    assert b"You need a WebSocket client." in response.body


def test_server_426_for_version_lists_supported_version() -> None:
    # RFC 6455 §4.4.
    response = ServerHandshake().accept(rfc_request(Sec_WebSocket_Version="8")).response
    assert response.status_code == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"
    assert response.headers["Upgrade"] == "websocket"


def test_server_405_says_allow_get() -> None:
    request = Request("/", rfc_request().headers, "PUT")
    response = ServerHandshake().accept(request).response
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


# Server: origins


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        (None, None, True),
        (None, "https://anything", True),
        (["https://a.example"], "https://a.example", True),
        (["https://a.example"], "https://b.example", False),
        (["https://a.example"], None, False),
        (["https://a.example", None], None, True),
        ([None], "https://a.example", False),
        ([], None, False),
        ([re.compile(r"https://[a-z]+\.example")], "https://b.example", True),
        # A regex must match the whole origin.
        ([re.compile(r"https://[a-z]+\.example")], "https://b.example.evil", False),
        ([re.compile(r"https://[a-z]+\.example")], None, False),
        (["null"], "null", True),
    ],
)
def test_server_origins(
    origins: list[object] | None, origin: str | None, allowed: bool
) -> None:
    request = rfc_request(Origin=origin or "")
    accepted = ServerHandshake(origins=origins).accept(request)  # type: ignore[arg-type]
    if allowed:
        assert accepted.error is None
        assert accepted.response.status_code == 101
    else:
        assert isinstance(accepted.error, InvalidOrigin)
        assert accepted.error.origin == origin
        assert accepted.response.status_code == 403


def test_server_rejects_repeated_origin() -> None:
    request = with_headers(rfc_request(), ("Origin", "http://example.com"))
    accepted = ServerHandshake(origins=["http://example.com"]).accept(request)
    assert isinstance(accepted.error, InvalidHeader)
    assert accepted.response.status_code == 400


# Server: extensions


def test_server_accepts_supported_extensions_in_client_order() -> None:
    one = FakeServerFactory("x-one", {(): [("ok", None)]})
    two = FakeServerFactory("x-two", {(("a", "1"),): [("a", "1")]})
    server = ServerHandshake(extensions=[one, two])
    request = rfc_request(Sec_WebSocket_Extensions="x-two; a=1, x-unknown, x-one")
    accepted = server.accept(request)
    assert (
        accepted.response.headers["Sec-WebSocket-Extensions"] == "x-two; a=1, x-one; ok"
    )
    assert [e.name for e in accepted.extensions] == ["x-two", "x-one"]
    assert two.seen_accepted == [[]]
    assert one.seen_accepted == [[accepted.extensions[0]]]


def test_server_accepts_first_acceptable_offer_of_each_extension() -> None:
    factory = FakeServerFactory(
        "x-one", {(("a", "2"),): [("a", "2")], (("a", "3"),): [("a", "3")]}
    )
    server = ServerHandshake(extensions=[factory])
    request = with_headers(
        rfc_request(Sec_WebSocket_Extensions="x-one; a=1, x-one; a=2"),
        ("Sec-WebSocket-Extensions", "x-one; a=3"),
    )
    accepted = server.accept(request)
    assert accepted.response.headers["Sec-WebSocket-Extensions"] == "x-one; a=2"
    assert len(accepted.extensions) == 1
    # The declined first offer was tried; the third was never looked at.
    assert len(factory.seen_accepted) == 2


def test_server_tries_each_factory_of_a_name() -> None:
    strict = FakeServerFactory("x-one", {})
    lenient = FakeServerFactory("x-one", {(("a", "1"),): []})
    server = ServerHandshake(extensions=[strict, lenient])
    accepted = server.accept(rfc_request(Sec_WebSocket_Extensions="x-one; a=1"))
    assert accepted.response.headers["Sec-WebSocket-Extensions"] == "x-one"
    assert len(accepted.extensions) == 1


def test_server_without_acceptable_extensions_sends_no_header() -> None:
    server = ServerHandshake(extensions=[FakeServerFactory("x-one", {})])
    accepted = server.accept(rfc_request(Sec_WebSocket_Extensions="x-one; a=1, x-two"))
    assert accepted.error is None
    assert "Sec-WebSocket-Extensions" not in accepted.response.headers
    assert accepted.extensions == []


def test_server_without_extension_support_ignores_offers() -> None:
    accepted = ServerHandshake().accept(rfc_request(Sec_WebSocket_Extensions="x-one"))
    assert accepted.error is None
    assert "Sec-WebSocket-Extensions" not in accepted.response.headers


# Server: subprotocols


def test_server_picks_first_client_offer_it_supports() -> None:
    server = ServerHandshake(subprotocols=["superchat", "chat"])
    accepted = server.accept(rfc_request(Sec_WebSocket_Protocol="chat, superchat"))
    assert accepted.subprotocol == "chat"
    assert accepted.response.headers["Sec-WebSocket-Protocol"] == "chat"


def test_server_combines_repeated_subprotocol_headers() -> None:
    server = ServerHandshake(subprotocols=["superchat"])
    request = with_headers(
        rfc_request(Sec_WebSocket_Protocol="chat"),
        ("Sec-WebSocket-Protocol", "superchat"),
    )
    assert server.accept(request).subprotocol == "superchat"


def test_server_without_common_subprotocol_picks_none() -> None:
    server = ServerHandshake(subprotocols=["mqtt"])
    accepted = server.accept(rfc_request())
    assert accepted.error is None
    assert accepted.subprotocol is None
    assert "Sec-WebSocket-Protocol" not in accepted.response.headers


def test_server_without_subprotocols_picks_none() -> None:
    accepted = ServerHandshake().accept(rfc_request())
    assert accepted.subprotocol is None
    assert "Sec-WebSocket-Protocol" not in accepted.response.headers


def test_server_select_subprotocol() -> None:
    offers: list[Sequence[str]] = []

    def select(subprotocols: Sequence[str]) -> str | None:
        offers.append(subprotocols)
        return subprotocols[-1]

    server = ServerHandshake(subprotocols=["chat"], select_subprotocol=select)
    accepted = server.accept(rfc_request())
    assert offers == [["chat", "superchat"]]
    assert accepted.subprotocol == "superchat"
    assert accepted.response.headers["Sec-WebSocket-Protocol"] == "superchat"


def test_server_select_subprotocol_returning_none() -> None:
    server = ServerHandshake(select_subprotocol=lambda subprotocols: None)
    accepted = server.accept(rfc_request())
    assert accepted.error is None
    assert accepted.subprotocol is None


def test_server_select_subprotocol_not_offered_is_a_server_error() -> None:
    server = ServerHandshake(select_subprotocol=lambda subprotocols: "secret-proto")
    accepted = server.accept(rfc_request())
    assert isinstance(accepted.error, NegotiationError)
    assert accepted.response.status_code == 500
    # The client isn't told about the application's bug.
    assert b"secret-proto" not in accepted.response.body


def test_server_select_subprotocol_exceptions_propagate() -> None:
    def select(subprotocols: Sequence[str]) -> str | None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ServerHandshake(select_subprotocol=select).accept(rfc_request())


# Server: reject()


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (431, "Request Header Fields Too Large"),
        (503, "Service Unavailable"),
        (599, ""),
    ],
)
def test_reject(status: int, reason: str) -> None:
    response = ServerHandshake().reject(status, "Nope ✋\n")
    assert response.status_code == status
    assert response.reason_phrase == reason
    assert response.body == "Nope ✋\n".encode()
    assert list(response.headers.raw_items()) == [
        ("Connection", "close"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(response.body))),
        ("Server", USER_AGENT),
    ]


def test_reject_round_trips_and_headers_can_change() -> None:
    response = ServerHandshake(server_header=None).reject(200, "<h1>hi</h1>")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "text/html"
    data = response.serialize()
    parsed, consumed = parse_response(data)  # type: ignore[misc]
    assert consumed == len(data)
    assert parsed.status_code == 200
    assert parsed.headers["Content-Type"] == "text/html"
    assert parsed.body == b"<h1>hi</h1>"
    assert "Server" not in parsed.headers


# Both sides, over the wire format


def test_full_handshake() -> None:
    client = ClientHandshake(
        parse_uri("ws://localhost:8765/chat"),
        origin="http://localhost:8765",
        extensions=[
            FakeClientFactory(
                "x-one", [("a", "1")], acceptable=[[("a", "1"), ("b", None)]]
            ),
            FakeClientFactory("x-two", []),
        ],
        subprotocols=["superchat", "chat"],
    )
    server = ServerHandshake(
        origins=["http://localhost:8765"],
        extensions=[
            FakeServerFactory("x-one", {(("a", "1"),): [("a", "1"), ("b", None)]})
        ],
        subprotocols=["chat", "superchat"],
    )
    data = client.request().serialize()
    request, consumed = parse_request(data + b"\x81")  # type: ignore[misc]
    assert consumed == len(data)
    accepted = server.accept(request)
    assert accepted.error is None
    assert accepted.subprotocol == "superchat"
    data = accepted.response.serialize()
    response, consumed = parse_response(data + b"\x81")  # type: ignore[misc]
    assert consumed == len(data)
    extensions, subprotocol = client.process_response(response)
    assert subprotocol == "superchat"
    assert [(e.name, e.params) for e in extensions] == [  # type: ignore[attr-defined]
        ("x-one", [("a", "1"), ("b", None)])
    ]
    assert [e.name for e in accepted.extensions] == ["x-one"]


def test_client_fails_on_server_rejection_over_the_wire() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), origin="https://evil.example")
    server = ServerHandshake(origins=["https://h"])
    request, _ = parse_request(client.request().serialize())  # type: ignore[misc]
    accepted = server.accept(request)
    response, _ = parse_response(accepted.response.serialize())  # type: ignore[misc]
    with pytest.raises(InvalidStatus) as excinfo:
        client.process_response(response)
    assert excinfo.value.response.status_code == 403
    assert b"invalid Origin header: https://evil.example" in excinfo.value.response.body
