"""Tests for wssync.sansio.extensions.permessage_deflate (RFC 7692)."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import tracemalloc
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wssync.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from wssync.sansio.extensions import (
    ClientExtensionFactory,
    ClientPerMessageDeflateFactory,
    Extension,
    PerMessageDeflate,
    ServerExtensionFactory,
    ServerPerMessageDeflateFactory,
)
from wssync.sansio.extensions import permessage_deflate as pmd_module
from wssync.sansio.frames import Frame, Opcode, serialize_frame
from wssync.sansio.protocol import Protocol, Side

Params = list[tuple[str, "str | None"]]

TAIL = b"\x00\x00\xff\xff"
WINDOWS = range(8, 16)

# --- helpers -----------------------------------------------------------------


def pmd(
    *,
    remote_no_context_takeover: bool = False,
    local_no_context_takeover: bool = False,
    remote_max_window_bits: int = 15,
    local_max_window_bits: int = 15,
    compress_settings: dict[str, int] | None = None,
) -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=remote_no_context_takeover,
        local_no_context_takeover=local_no_context_takeover,
        remote_max_window_bits=remote_max_window_bits,
        local_max_window_bits=local_max_window_bits,
        compress_settings=compress_settings,
    )


def pair(
    *, no_context_takeover: bool = False, window_bits: int = 15
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A sender and a receiver that agree on one direction."""
    sender = pmd(
        local_no_context_takeover=no_context_takeover,
        local_max_window_bits=window_bits,
    )
    receiver = pmd(
        remote_no_context_takeover=no_context_takeover,
        remote_max_window_bits=window_bits,
    )
    return sender, receiver


def negotiate(
    client: ClientPerMessageDeflateFactory,
    server: ServerPerMessageDeflateFactory,
) -> tuple[PerMessageDeflate, PerMessageDeflate, Params]:
    offer = client.get_request_params()
    response, server_ext = server.process_request_params(offer, [])
    client_ext = client.process_response_params(response, [])
    return client_ext, server_ext, response


def fragments(
    data: bytes, cuts: Sequence[int], opcode: Opcode = Opcode.BINARY
) -> list[Frame]:
    """Split one message into frames at the given offsets."""
    bounds = sorted({min(cut, len(data)) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)])]
    return [
        Frame(opcode if i == 0 else Opcode.CONT, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]


def send_message(
    sender: PerMessageDeflate,
    receiver: PerMessageDeflate,
    data: bytes,
    cuts: Sequence[int] = (),
    opcode: Opcode = Opcode.BINARY,
) -> tuple[bytes, list[Frame]]:
    """Encode a message, check the RSV1 rules on the wire, decode it."""
    wire = [sender.encode(frame) for frame in fragments(data, cuts, opcode)]
    # RFC 7692 §6.1: RSV1 on the first frame only.
    assert [frame.rsv1 for frame in wire] == [True] + [False] * (len(wire) - 1)
    decoded = [receiver.decode(frame) for frame in wire]
    assert all(not frame.rsv1 for frame in decoded)
    assert [frame.opcode for frame in decoded] == [frame.opcode for frame in wire]
    assert [frame.fin for frame in decoded] == [frame.fin for frame in wire]
    return b"".join(frame.data for frame in decoded), wire


def raw_deflate(messages: Sequence[bytes], wbits: int = 15) -> list[bytes]:
    """Compress messages the RFC 7692 §7.2.1 way with zlib directly."""
    if wbits == 8:  # zlib can't do 8 bits; this is a valid way to respect it
        compressor = zlib.compressobj(wbits=-9, strategy=zlib.Z_RLE)
    else:
        compressor = zlib.compressobj(wbits=-wbits)
    payloads = []
    for message in messages:
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        payloads.append(data[:-4])
    return payloads


def raw_inflate(payloads: Sequence[bytes], wbits: int = 15) -> list[bytes]:
    """Decompress payloads the RFC 7692 §7.2.2 way with a strict zlib window."""
    decompressor = zlib.decompressobj(wbits=-wbits)
    return [decompressor.decompress(payload + TAIL) for payload in payloads]


def far_repeats(window_bits: int, seed: int = 0) -> bytes:
    """Data whose repeats sit just inside and just outside the window."""
    rng = random.Random(seed)
    near = bytes(rng.getrandbits(8) for _ in range(max(1 << window_bits - 2, 40)))
    far = bytes(rng.getrandbits(8) for _ in range(1 << window_bits))
    return near + near + far + far + b"x" * 1000 + far


@pytest.fixture(params=["tail joined", "tail apart"])
def tail_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test down both ways the decoder appends the RFC 7692 §7.2.2 tail.

    Small final payloads get the tail appended and go through zlib in one
    call; big ones get it in a second call. Every limit case must behave the
    same both ways.
    """
    if request.param == "tail apart":
        monkeypatch.setattr(pmd_module, "_TAIL_JOIN_LIMIT", 0)


@contextlib.contextmanager
def tail_join_limit(limit: int) -> Iterator[None]:
    """The same as the tail_path fixture, for hypothesis tests."""
    saved = pmd_module._TAIL_JOIN_LIMIT
    pmd_module._TAIL_JOIN_LIMIT = limit
    try:
        yield
    finally:
        pmd_module._TAIL_JOIN_LIMIT = saved


# --- base classes ------------------------------------------------------------


def test_base_classes_are_abstract() -> None:
    frame = Frame(Opcode.TEXT, b"")
    with pytest.raises(NotImplementedError):
        Extension().decode(frame)
    with pytest.raises(NotImplementedError):
        Extension().encode(frame)
    with pytest.raises(NotImplementedError):
        ClientExtensionFactory().get_request_params()
    with pytest.raises(NotImplementedError):
        ClientExtensionFactory().process_response_params([], [])
    with pytest.raises(NotImplementedError):
        ServerExtensionFactory().process_request_params([], [])


def test_names() -> None:
    assert PerMessageDeflate.name == "permessage-deflate"
    assert ClientPerMessageDeflateFactory.name == "permessage-deflate"
    assert ServerPerMessageDeflateFactory.name == "permessage-deflate"
    assert issubclass(PerMessageDeflate, Extension)
    assert issubclass(ClientPerMessageDeflateFactory, ClientExtensionFactory)
    assert issubclass(ServerPerMessageDeflateFactory, ServerExtensionFactory)


# --- constructors ------------------------------------------------------------


@pytest.mark.parametrize("bits", [7, 16, 0, -1, True, False, 12.0, "12"])
def test_invalid_window_bits_in_constructors(bits: object) -> None:
    with pytest.raises(ValueError):
        pmd(remote_max_window_bits=bits)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pmd(local_max_window_bits=bits)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClientPerMessageDeflateFactory(server_max_window_bits=bits)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ServerPerMessageDeflateFactory(server_max_window_bits=bits)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ServerPerMessageDeflateFactory(client_max_window_bits=bits)  # type: ignore[arg-type]
    if not isinstance(bits, bool):  # True / False mean "bare" / "not offered"
        with pytest.raises(ValueError):
            ClientPerMessageDeflateFactory(client_max_window_bits=bits)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings_",
    [
        {"wbits": 15},
        {"method": 8},
        {"zdict": 1},
        {"level": 10},
        {"level": -2},
        {"memLevel": 0},
        {"memLevel": 10},
        {"strategy": 5},
        {"level": True},
        {"level": "1"},
    ],
)
def test_invalid_compress_settings(settings_: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        pmd(compress_settings=settings_)
    with pytest.raises(ValueError):
        ClientPerMessageDeflateFactory(compress_settings=settings_)
    with pytest.raises(ValueError):
        ServerPerMessageDeflateFactory(compress_settings=settings_)


def test_compress_settings_override_defaults() -> None:
    assert pmd().compress_settings == {"memLevel": 5}
    assert pmd(compress_settings={"level": 1}).compress_settings == {
        "memLevel": 5,
        "level": 1,
    }
    assert pmd(compress_settings={"memLevel": 9}).compress_settings == {"memLevel": 9}


@pytest.mark.parametrize(
    "compress_settings",
    [
        {"level": 0},
        {"level": 1},
        {"level": 9, "memLevel": 9},
        {"memLevel": 1},
        {"strategy": zlib.Z_FILTERED},
        {"strategy": zlib.Z_HUFFMAN_ONLY},
        {"strategy": zlib.Z_RLE},
        {"strategy": zlib.Z_FIXED},
    ],
)
@pytest.mark.parametrize("window_bits", [8, 9, 15])
def test_compress_settings_round_trip(
    compress_settings: dict[str, int], window_bits: int
) -> None:
    sender = pmd(local_max_window_bits=window_bits, compress_settings=compress_settings)
    data = far_repeats(window_bits)
    payloads = [sender.encode(Frame(Opcode.BINARY, data)).data for _ in range(2)]
    assert raw_inflate(payloads, window_bits) == [data, data]


def test_level_zero_sends_stored_blocks() -> None:
    sender = pmd(compress_settings={"level": 0})
    frame = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    # RFC 7692 §7.2.3.3: a DEFLATE block with no compression.
    assert frame.data == bytes.fromhex("000500faff48656c6c6f00")


def test_client_factory_false_means_not_offered() -> None:
    factory = ClientPerMessageDeflateFactory(client_max_window_bits=False)
    assert factory.client_max_window_bits is None
    assert factory.get_request_params() == []


def test_server_factory_require_needs_a_window() -> None:
    with pytest.raises(ValueError):
        ServerPerMessageDeflateFactory(
            client_max_window_bits=None, require_client_max_window_bits=True
        )


def test_reprs() -> None:
    assert repr(pmd(local_max_window_bits=9)) == (
        "PerMessageDeflate(remote_no_context_takeover=False, "
        "local_no_context_takeover=False, remote_max_window_bits=15, "
        "local_max_window_bits=9)"
    )
    assert "server_max_window_bits=None" in repr(ClientPerMessageDeflateFactory())
    assert "require_client_max_window_bits=False" in repr(
        ServerPerMessageDeflateFactory()
    )


# --- defaults ----------------------------------------------------------------


def test_default_offer() -> None:
    assert ClientPerMessageDeflateFactory().get_request_params() == [
        ("client_max_window_bits", "12")
    ]


def test_default_negotiation() -> None:
    client_ext, server_ext, response = negotiate(
        ClientPerMessageDeflateFactory(), ServerPerMessageDeflateFactory()
    )
    assert response == [
        ("server_max_window_bits", "12"),
        ("client_max_window_bits", "12"),
    ]
    for ext in client_ext, server_ext:
        assert ext.local_max_window_bits == ext.remote_max_window_bits == 12
        assert not ext.local_no_context_takeover
        assert not ext.remote_no_context_takeover
        assert ext.compress_settings == {"memLevel": 5}


def test_browser_offer_to_default_server() -> None:
    # What browsers send: the bare parameter, so the server may cap the window.
    response, ext = ServerPerMessageDeflateFactory().process_request_params(
        [("client_max_window_bits", None)], []
    )
    assert response == [
        ("server_max_window_bits", "12"),
        ("client_max_window_bits", "12"),
    ]
    assert ext.remote_max_window_bits == 12
    assert ext.local_max_window_bits == 12


def test_bare_offer_to_default_server() -> None:
    # RFC 7692 §7.1.2.2: no client_max_window_bits in the offer, none in the
    # response; the client may then use the full window.
    response, ext = ServerPerMessageDeflateFactory().process_request_params([], [])
    assert response == [("server_max_window_bits", "12")]
    assert ext.remote_max_window_bits == 15


# --- offers (client side) ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        ({"client_max_window_bits": None}, []),
        ({"client_max_window_bits": True}, [("client_max_window_bits", None)]),
        ({"client_max_window_bits": 8}, [("client_max_window_bits", "8")]),
        (
            {"server_no_context_takeover": True, "client_max_window_bits": None},
            [("server_no_context_takeover", None)],
        ),
        (
            {"client_no_context_takeover": True, "client_max_window_bits": None},
            [("client_no_context_takeover", None)],
        ),
        (
            {"server_max_window_bits": 10, "client_max_window_bits": None},
            [("server_max_window_bits", "10")],
        ),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 15,
                "client_max_window_bits": 9,
            },
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "15"),
                ("client_max_window_bits", "9"),
            ],
        ),
    ],
)
def test_offer(kwargs: dict[str, Any], params: Params) -> None:
    factory = ClientPerMessageDeflateFactory(**kwargs)
    assert factory.get_request_params() == params


# --- responses (client side): the whole matrix against an RFC oracle -------

CLIENT_CONFIGS = [
    {
        "server_no_context_takeover": snct,
        "client_no_context_takeover": cnct,
        "server_max_window_bits": smwb,
        "client_max_window_bits": cmwb,
    }
    for snct, cnct in itertools.product([False, True], repeat=2)
    for smwb in [None, *WINDOWS]
    for cmwb in [None, True, *WINDOWS]
]


def all_responses() -> Iterator[tuple[bool, bool, int | None, int | None]]:
    yield from itertools.product(
        [False, True], [False, True], [None, *WINDOWS], [None, *WINDOWS]
    )


def build_params(
    snct: bool, cnct: bool, smwb: int | bool | None, cmwb: int | bool | None
) -> Params:
    params: Params = []
    if snct:
        params.append(("server_no_context_takeover", None))
    if cnct:
        params.append(("client_no_context_takeover", None))
    if smwb is not None:
        params.append(("server_max_window_bits", str(smwb)))
    if cmwb is True:
        params.append(("client_max_window_bits", None))
    elif cmwb is not None:
        params.append(("client_max_window_bits", str(cmwb)))
    return params


@pytest.mark.parametrize("config", CLIENT_CONFIGS, ids=repr)
def test_client_accepts_exactly_the_legal_responses(config: dict[str, Any]) -> None:
    factory = ClientPerMessageDeflateFactory(**config)
    offered_smwb = config["server_max_window_bits"]
    offered_cmwb = config["client_max_window_bits"]
    for snct, cnct, smwb, cmwb in all_responses():
        # The oracle: RFC 7692 §7.1.1.1, §7.1.2.1, §7.1.2.2, restated.
        legal = True
        if config["server_no_context_takeover"] and not snct:
            legal = False  # accepting means including it
        if offered_smwb is not None and (smwb is None or smwb > offered_smwb):
            legal = False  # "the same or smaller value"
        if offered_cmwb is None and cmwb is not None:
            legal = False  # "MUST NOT include"
        params = build_params(snct, cnct, smwb, cmwb)
        if not legal:
            with pytest.raises(NegotiationError):
                factory.process_response_params(params, [])
            continue
        ext = factory.process_response_params(params, [])
        assert ext.remote_no_context_takeover == snct
        assert ext.local_no_context_takeover == (
            cnct or config["client_no_context_takeover"]
        )
        assert ext.remote_max_window_bits == (15 if smwb is None else smwb)
        expected_local = 15 if cmwb is None else cmwb
        if isinstance(offered_cmwb, int) and offered_cmwb is not True:
            # An offered value is what the client promised; it keeps it even
            # when the server "ignores" it (§7.1.2.2).
            expected_local = min(expected_local, offered_cmwb)
        assert ext.local_max_window_bits == expected_local


def test_server_answers_smaller_server_window() -> None:
    factory = ClientPerMessageDeflateFactory(server_max_window_bits=12)
    ext = factory.process_response_params([("server_max_window_bits", "10")], [])
    assert ext.remote_max_window_bits == 10


def test_server_answers_client_window_to_bare_offer() -> None:
    factory = ClientPerMessageDeflateFactory(client_max_window_bits=True)
    ext = factory.process_response_params([("client_max_window_bits", "9")], [])
    assert ext.local_max_window_bits == 9
    ext = factory.process_response_params([], [])
    assert ext.local_max_window_bits == 15


def test_server_ignores_client_window_hint() -> None:
    factory = ClientPerMessageDeflateFactory(client_max_window_bits=10)
    ext = factory.process_response_params([("client_max_window_bits", "15")], [])
    assert ext.local_max_window_bits == 10
    ext = factory.process_response_params([], [])
    assert ext.local_max_window_bits == 10


def test_server_adds_parameters_unasked() -> None:
    factory = ClientPerMessageDeflateFactory(client_max_window_bits=None)
    ext = factory.process_response_params(
        [
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "8"),
        ],
        [],
    )
    assert ext.remote_no_context_takeover
    assert ext.local_no_context_takeover
    assert ext.remote_max_window_bits == 8
    assert ext.local_max_window_bits == 15


BAD_VALUES = ["7", "16", "08", "0", "-9", "+9", " 9", "9 ", "", "nine", "1e1", "9.0"]


@pytest.mark.parametrize(
    "params",
    [
        [("unknown", None)],
        [("unknown", "1")],
        [("Server_No_Context_Takeover", None)],
        [("server_no_context_takeover", "")],
        [("server_no_context_takeover", "true")],
        [("client_no_context_takeover", "1")],
        [("server_max_window_bits", None)],
        # RFC 7692 §7.1.2.2: a response must give client_max_window_bits a value.
        [("client_max_window_bits", None)],
        [("server_no_context_takeover", None)] * 2,
        [("client_no_context_takeover", None)] * 2,
        [("server_max_window_bits", "10")] * 2,
        [("server_max_window_bits", "10"), ("server_max_window_bits", "11")],
        [("client_max_window_bits", "10"), ("client_max_window_bits", "10")],
        *([("server_max_window_bits", value)] for value in BAD_VALUES),
        *([("client_max_window_bits", value)] for value in BAD_VALUES),
    ],
)
def test_client_rejects_invalid_response(params: Params) -> None:
    factory = ClientPerMessageDeflateFactory(client_max_window_bits=True)
    with pytest.raises(NegotiationError):
        factory.process_response_params(params, [])


def test_client_rejects_second_permessage_deflate() -> None:
    factory = ClientPerMessageDeflateFactory()
    with pytest.raises(NegotiationError):
        factory.process_response_params([], [pmd()])


# --- offers (server side): the whole matrix against an RFC oracle ----------

SERVER_CONFIGS = [
    {
        "server_no_context_takeover": snct,
        "client_no_context_takeover": cnct,
        "server_max_window_bits": smwb,
        "client_max_window_bits": cmwb,
        "require_client_max_window_bits": require,
    }
    for snct, cnct in itertools.product([False, True], repeat=2)
    for smwb in [None, 8, 9, 12, 15]
    for cmwb in [None, 8, 9, 12, 15]
    for require in [False, True]
    if not (require and cmwb is None)
]


def all_offers() -> Iterator[tuple[bool, bool, int | None, int | bool | None]]:
    yield from itertools.product(
        [False, True], [False, True], [None, *WINDOWS], [None, True, *WINDOWS]
    )


def window(answer: dict[str, str | None], name: str) -> int:
    value = answer[name]
    assert value is not None
    return int(value)


@pytest.mark.parametrize("config", SERVER_CONFIGS, ids=repr)
def test_server_accepts_every_legal_offer(config: dict[str, Any]) -> None:
    factory = ServerPerMessageDeflateFactory(**config)
    our_smwb = config["server_max_window_bits"]
    our_cmwb = config["client_max_window_bits"]
    for snct, cnct, smwb, cmwb in all_offers():
        params = build_params(snct, cnct, smwb, cmwb)
        if config["require_client_max_window_bits"] and cmwb is None:
            with pytest.raises(NegotiationError):
                factory.process_request_params(params, [])
            continue
        response, ext = factory.process_request_params(params, [])
        answer = dict(response)

        assert len(answer) == len(response)  # no duplicates
        assert set(answer) <= {
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        }
        # The response is legal for the offer (RFC 7692 §7.1).
        for name in "server_no_context_takeover", "client_no_context_takeover":
            assert answer.get(name) is None
        if snct:
            assert "server_no_context_takeover" in answer
        if smwb is not None:
            assert window(answer, "server_max_window_bits") <= smwb
        if cmwb is None:
            assert "client_max_window_bits" not in answer
        for name in "server_max_window_bits", "client_max_window_bits":
            if name in answer:
                assert answer[name] in {str(bits) for bits in WINDOWS}
        # The response honours the server's own settings.
        if config["server_no_context_takeover"]:
            assert "server_no_context_takeover" in answer
        if config["client_no_context_takeover"]:
            assert "client_no_context_takeover" in answer
        if isinstance(our_smwb, int):
            assert window(answer, "server_max_window_bits") <= our_smwb
        if isinstance(our_cmwb, int) and cmwb is not None:
            assert window(answer, "client_max_window_bits") <= our_cmwb
        if isinstance(cmwb, int) and cmwb is not True:
            # An offered value is never raised (§7.1.2.2 lets us echo or lower).
            assert window(answer, "client_max_window_bits") <= cmwb
        # The extension does what the response says.
        assert ext.local_no_context_takeover == ("server_no_context_takeover" in answer)
        assert ext.remote_no_context_takeover == (
            "client_no_context_takeover" in answer
        )
        assert ext.local_max_window_bits == (
            window(answer, "server_max_window_bits")
            if "server_max_window_bits" in answer
            else 15
        )
        assert ext.remote_max_window_bits == (
            window(answer, "client_max_window_bits")
            if "client_max_window_bits" in answer
            else 15
        )


@pytest.mark.parametrize(
    "params",
    [
        [("unknown", None)],
        [("x-webkit-deflate-frame", None)],
        [("server_no_context_takeover", "1")],
        [("client_no_context_takeover", "")],
        [("server_max_window_bits", None)],
        [("server_no_context_takeover", None)] * 2,
        [("client_no_context_takeover", None)] * 2,
        [("server_max_window_bits", "9"), ("server_max_window_bits", "9")],
        [("client_max_window_bits", None), ("client_max_window_bits", None)],
        [("client_max_window_bits", None), ("client_max_window_bits", "9")],
        *([("server_max_window_bits", value)] for value in BAD_VALUES),
        *([("client_max_window_bits", value)] for value in BAD_VALUES),
    ],
)
def test_server_declines_invalid_offer(params: Params) -> None:
    factory = ServerPerMessageDeflateFactory()
    with pytest.raises(NegotiationError):
        factory.process_request_params(params, [])


def test_server_declines_second_permessage_deflate() -> None:
    factory = ServerPerMessageDeflateFactory()
    with pytest.raises(NegotiationError):
        factory.process_request_params([], [pmd()])


def test_server_requires_client_max_window_bits() -> None:
    factory = ServerPerMessageDeflateFactory(require_client_max_window_bits=True)
    with pytest.raises(NegotiationError):
        factory.process_request_params([], [])
    response, _ = factory.process_request_params([("client_max_window_bits", None)], [])
    assert ("client_max_window_bits", "12") in response


def test_server_honours_window_8_offer() -> None:
    # Autobahn 13.3 / 13.5 offer server_max_window_bits=8: never refuse it,
    # never answer with a window the compressor wouldn't respect.
    response, ext = ServerPerMessageDeflateFactory().process_request_params(
        [("server_max_window_bits", "8"), ("client_max_window_bits", None)], []
    )
    assert ("server_max_window_bits", "8") in response
    data = far_repeats(8)
    payload = ext.encode(Frame(Opcode.BINARY, data)).data
    assert raw_inflate([payload], 8) == [data]


# --- end to end: our client against our server -------------------------------

E2E_CLIENTS = [
    ClientPerMessageDeflateFactory(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )
    for snct, cnct in itertools.product([False, True], repeat=2)
    for smwb in [None, 8, 9, 13]
    for cmwb in [None, True, 8, 11]
]
E2E_SERVERS = [
    ServerPerMessageDeflateFactory(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )
    for snct, cnct in itertools.product([False, True], repeat=2)
    for smwb in [None, 8, 10]
    for cmwb in [None, 8, 12]
]
E2E_DATA = far_repeats(9, seed=1)


@pytest.mark.parametrize("client", E2E_CLIENTS, ids=repr)
def test_end_to_end(client: ClientPerMessageDeflateFactory) -> None:
    for server in E2E_SERVERS:
        client_ext, server_ext, _ = negotiate(client, server)
        # Both ends agree on each direction.
        assert client_ext.remote_max_window_bits == server_ext.local_max_window_bits
        assert client_ext.local_max_window_bits <= server_ext.remote_max_window_bits
        assert (
            client_ext.remote_no_context_takeover
            == server_ext.local_no_context_takeover
        )
        if server_ext.remote_no_context_takeover:
            assert client_ext.local_no_context_takeover
        # Messages survive both ways, fragmented or not, twice (context).
        for sender, receiver in (client_ext, server_ext), (server_ext, client_ext):
            for cuts in [(), (100, 700)]:
                for _ in range(2):
                    received, _ = send_message(sender, receiver, E2E_DATA, cuts)
                    assert received == E2E_DATA


# --- RFC 7692 §7.2.3 examples ------------------------------------------------


def frame_bytes(frame: Frame) -> bytes:
    return b"".join(serialize_frame(frame, mask=False))


def test_rfc_7_2_3_1_hello_one_frame(tail_path: None) -> None:
    sender, receiver = pair()
    frame = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert frame_bytes(frame) == bytes.fromhex("c107f248cdc9c90700")
    assert receiver.decode(frame) == Frame(Opcode.TEXT, b"Hello")


def test_rfc_7_2_3_1_hello_two_frames(tail_path: None) -> None:
    _, receiver = pair()
    first = Frame(Opcode.TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=True)
    second = Frame(Opcode.CONT, bytes.fromhex("c9c90700"))
    assert frame_bytes(first) == bytes.fromhex("4103f248cd")
    assert frame_bytes(second) == bytes.fromhex("8004c9c90700")
    assert receiver.decode(first) == Frame(Opcode.TEXT, b"He", fin=False)
    assert receiver.decode(second) == Frame(Opcode.CONT, b"llo")


def test_rfc_7_2_3_2_sharing_the_window(tail_path: None) -> None:
    sender, receiver = pair()
    first = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    second = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert frame_bytes(first) == bytes.fromhex("c107f248cdc9c90700")
    assert frame_bytes(second) == bytes.fromhex("c105f200110000")
    assert receiver.decode(first).data == b"Hello"
    assert receiver.decode(second).data == b"Hello"


def test_rfc_7_2_3_2_no_context_takeover(tail_path: None) -> None:
    sender, receiver = pair(no_context_takeover=True)
    first = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    second = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert first.data == second.data == bytes.fromhex("f248cdc9c90700")
    assert receiver.decode(first).data == b"Hello"
    assert receiver.decode(second).data == b"Hello"


def test_rfc_7_2_3_2_reset_decoder_rejects_shared_window(tail_path: None) -> None:
    # A decoder told the peer doesn't take over context starts each message
    # afresh, so a back-reference into the previous message is invalid.
    _, receiver = pair(no_context_takeover=True)
    receiver.decode(Frame(Opcode.TEXT, bytes.fromhex("f248cdc9c90700"), rsv1=True))
    with pytest.raises(ProtocolError):
        receiver.decode(Frame(Opcode.TEXT, bytes.fromhex("f200110000"), rsv1=True))


@pytest.mark.parametrize(
    "payload",
    [
        # §7.2.3.3: a DEFLATE block with no compression.
        "000500faff48656c6c6f00",
        # §7.2.3.4: a DEFLATE block with BFINAL set to 1.
        "f348cdc9c9070000",
        # §7.2.3.5: two DEFLATE blocks, "He" then "llo", in one message.
        "f24805000000ffffcac9c90700",
    ],
)
def test_rfc_7_2_3_other_payloads(payload: str, tail_path: None) -> None:
    sender, receiver = pair()
    for _ in range(2):  # the decoder stays usable after each of them
        frame = Frame(Opcode.TEXT, bytes.fromhex(payload), rsv1=True)
        assert receiver.decode(frame).data == b"Hello"
    frame = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert receiver.decode(frame).data == b"Hello"


def test_bfinal_block_then_new_stream(tail_path: None) -> None:
    # After a BFINAL block, the next message is a new DEFLATE stream; it must
    # be decoded, not silently dropped as zlib's unused_data.
    _, receiver = pair()
    for payload in ["f348cdc9c90700", "f348cdc9c9070000", "f248cdc9c90700"]:
        frame = Frame(Opcode.TEXT, bytes.fromhex(payload), rsv1=True)
        assert receiver.decode(frame).data == b"Hello"


def test_bfinal_then_more_data_in_same_message(tail_path: None) -> None:
    # Two complete DEFLATE streams back to back in one message.
    _, receiver = pair()
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"Hello, ") + compressor.flush(zlib.Z_FINISH)
    second = raw_deflate([b"world"])[0]
    frame = Frame(Opcode.TEXT, first + second, rsv1=True)
    assert receiver.decode(frame).data == b"Hello, world"
    # And split over frames at every offset.
    for cut in range(len(first + second) + 1):
        _, receiver = pair()
        data = first + second
        start = Frame(Opcode.TEXT, data[:cut], fin=False, rsv1=True)
        end = Frame(Opcode.CONT, data[cut:])
        decoded = receiver.decode(start).data + receiver.decode(end).data
        assert decoded == b"Hello, world"


# --- interop with raw zlib ---------------------------------------------------


MESSAGES = [
    b"Hello",
    b"Hello",
    b"",
    b'{"event": "tick", "value": 1}' * 20,
    os.urandom(3000),
    bytes(5000),
    b"Hello",
]


@pytest.mark.parametrize("window_bits", WINDOWS)
def test_decode_raw_zlib_stream(window_bits: int, tail_path: None) -> None:
    _, receiver = pair(window_bits=window_bits)
    payloads = raw_deflate(MESSAGES, window_bits)
    for message, payload in zip(MESSAGES, payloads):
        frame = Frame(Opcode.BINARY, payload, rsv1=True)
        assert receiver.decode(frame).data == message


@pytest.mark.parametrize("window_bits", WINDOWS)
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_encode_for_raw_zlib(window_bits: int, no_context_takeover: bool) -> None:
    sender, _ = pair(no_context_takeover=no_context_takeover, window_bits=window_bits)
    payloads = [sender.encode(Frame(Opcode.BINARY, m)).data for m in MESSAGES]
    if no_context_takeover:
        # Each message must decode alone, with a fresh strict decompressor.
        assert [raw_inflate([p], window_bits)[0] for p in payloads] == MESSAGES
    else:
        assert raw_inflate(payloads, window_bits) == MESSAGES
    # The 00 00 ff ff tail is never sent (RFC 7692 §7.2.1).
    assert not any(payload.endswith(TAIL) for payload in payloads)


def test_encoded_empty_message(tail_path: None) -> None:
    sender, receiver = pair()
    frame = sender.encode(Frame(Opcode.TEXT, b""))
    assert frame.rsv1
    assert frame.data == b"\x00"
    assert receiver.decode(frame) == Frame(Opcode.TEXT, b"")


def test_empty_compressed_payload_keeps_context(tail_path: None) -> None:
    # A peer may send an empty payload with RSV1: DEFLATE data for nothing.
    # Feeding the tail alone would leave zlib inside a bogus stored block and
    # corrupt the next message; it is treated as an empty message instead.
    sender, receiver = pair()
    assert receiver.decode(sender.encode(Frame(Opcode.TEXT, b"Hello"))).data == (
        b"Hello"
    )
    assert receiver.decode(Frame(Opcode.TEXT, b"", rsv1=True)).data == b""
    assert receiver.decode(sender.encode(Frame(Opcode.TEXT, b"Hello"))).data == (
        b"Hello"
    )


# --- windows and context takeover -------------------------------------------


@pytest.mark.parametrize("window_bits", WINDOWS)
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_every_window_round_trip(
    window_bits: int, no_context_takeover: bool, tail_path: None
) -> None:
    sender, receiver = pair(
        no_context_takeover=no_context_takeover, window_bits=window_bits
    )
    data = far_repeats(window_bits, seed=window_bits)
    for cuts in [(), (1,), (10, 20, 3000), tuple(range(0, len(data), 997))]:
        for opcode in Opcode.TEXT, Opcode.BINARY:
            received, wire = send_message(sender, receiver, data, cuts, opcode)
            assert received == data
            # The window is respected: a strict zlib decompressor with exactly
            # this window reads the compressed message.
            payload = b"".join(frame.data for frame in wire)
            if no_context_takeover:
                assert raw_inflate([payload], window_bits) == [data]


@pytest.mark.parametrize("window_bits", WINDOWS)
def test_window_respected_across_messages(window_bits: int, tail_path: None) -> None:
    # With context takeover, later messages refer to earlier ones: a strict
    # decompressor with the negotiated window must still follow.
    sender, _ = pair(window_bits=window_bits)
    messages = [far_repeats(window_bits, seed=n)[: 300 + 200 * n] for n in range(8)]
    messages += messages
    payloads = [sender.encode(Frame(Opcode.BINARY, m)).data for m in messages]
    assert raw_inflate(payloads, window_bits) == messages


def test_window_8_uses_a_window_zlib_respects() -> None:
    # zlib refuses raw deflate with 8 bits; the extension must still produce
    # output that a strict 256-byte-window decompressor reads, whatever the
    # strategy asked for.
    with pytest.raises(ValueError):
        zlib.compressobj(wbits=-8)
    for strategy in range(5):
        sender = pmd(local_max_window_bits=8, compress_settings={"strategy": strategy})
        data = far_repeats(8, seed=strategy) * 3
        payloads = [sender.encode(Frame(Opcode.BINARY, data)).data for _ in range(3)]
        assert raw_inflate(payloads, 8) == [data] * 3


def test_decoder_window_is_strict() -> None:
    # Data compressed with a 32 KiB window, referring 20000 bytes back, is
    # rejected by a decoder that negotiated 512 bytes.
    block = os.urandom(20000)
    payload = raw_deflate([block + block], 15)[0]
    _, receiver = pair(window_bits=9)
    with pytest.raises(ProtocolError):
        receiver.decode(Frame(Opcode.BINARY, payload, rsv1=True))


def test_context_takeover_shrinks_repeated_messages() -> None:
    message = os.urandom(1000)
    sender, receiver = pair()
    sizes = []
    for _ in range(3):
        frame = sender.encode(Frame(Opcode.BINARY, message))
        sizes.append(len(frame.data))
        assert receiver.decode(frame).data == message
    # Random bytes don't compress, but a repeat is a single back-reference.
    assert sizes[0] > 1000
    assert sizes[1] < 20
    assert sizes[2] < 20

    sender, receiver = pair(no_context_takeover=True)
    frames = [sender.encode(Frame(Opcode.BINARY, message)) for _ in range(3)]
    assert frames[0] == frames[1] == frames[2]
    assert all(receiver.decode(frame).data == message for frame in frames)


def test_uncompressed_messages_pass_through(tail_path: None) -> None:
    sender, receiver = pair()
    first, _ = send_message(sender, receiver, b"Hello")
    assert first == b"Hello"
    # A message sent without RSV1, fragmented: untouched, and it doesn't
    # disturb the decompressor's window for the next compressed message.
    for frame in fragments(b"plain text", [5]):
        assert receiver.decode(frame) is frame
    again = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert again.data == bytes.fromhex("f200110000")
    assert receiver.decode(again).data == b"Hello"


# --- control frames and RSV1 rules ------------------------------------------


CONTROL_FRAMES = [
    Frame(Opcode.PING, b"ping"),
    Frame(Opcode.PONG, b"pong"),
    Frame(Opcode.CLOSE, b"\x03\xe8bye"),
]


@pytest.mark.parametrize("control", CONTROL_FRAMES)
def test_control_frames_untouched(control: Frame, tail_path: None) -> None:
    sender, receiver = pair()
    assert sender.encode(control) is control
    assert receiver.decode(control) is control
    # Interleaved in a compressed, fragmented message.
    data = far_repeats(10)
    wire = [sender.encode(frame) for frame in fragments(data, [100, 2000])]
    wire.insert(1, sender.encode(control))
    wire.insert(3, sender.encode(control))
    decoded = [receiver.decode(frame) for frame in wire]
    assert decoded[1] is wire[1]
    assert decoded[3] is wire[3]
    assert b"".join(f.data for f in decoded if f.opcode < Opcode.CLOSE) == data


@pytest.mark.parametrize("control", CONTROL_FRAMES)
def test_rsv1_on_control_frame(control: Frame) -> None:
    # RFC 7692 §6.1: control frames are never compressed.
    _, receiver = pair()
    with pytest.raises(ProtocolError):
        receiver.decode(control._replace(rsv1=True))


def test_rsv1_on_continuation_frame(tail_path: None) -> None:
    # RFC 7692 §6.1: RSV1 only on the first frame of a message.
    _, receiver = pair()
    receiver.decode(Frame(Opcode.TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=True))
    with pytest.raises(ProtocolError):
        receiver.decode(Frame(Opcode.CONT, bytes.fromhex("c9c90700"), rsv1=True))
    _, receiver = pair()
    receiver.decode(Frame(Opcode.TEXT, b"He", fin=False))
    with pytest.raises(ProtocolError):
        receiver.decode(Frame(Opcode.CONT, b"llo", rsv1=True))


def test_other_rsv_bits_untouched() -> None:
    # RSV2 / RSV3 aren't this extension's: left for the protocol to reject.
    sender, receiver = pair()
    frame = sender.encode(Frame(Opcode.TEXT, b"Hello", rsv2=True, rsv3=True))
    assert frame.rsv2
    assert frame.rsv3
    decoded = receiver.decode(frame)
    assert decoded.rsv2
    assert decoded.rsv3


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"\xff\xff\xff\xff",
        b"\x07\x00",  # reserved block type 11
        bytes.fromhex("000500faff48656c"),  # stored block cut short...
        bytes.fromhex("0005001234"),  # ...or with a wrong NLEN
        bytes.fromhex("f200110000"),  # back-reference with no history
    ],
)
def test_bad_compressed_data(payload: bytes, tail_path: None) -> None:
    _, receiver = pair()
    with pytest.raises(ProtocolError):
        receiver.decode(Frame(Opcode.BINARY, payload, rsv1=True))


# --- max_size ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """64 MiB of zeros, compressed to about 64 KiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(64)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH)[:-4])
    return b"".join(parts)


def peak_memory_of(function: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(PayloadTooBig):
            function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bomb_single_frame(bomb: bytes, tail_path: None) -> None:
    assert len(bomb) < 100_000
    _, receiver = pair()
    frame = Frame(Opcode.BINARY, bomb, rsv1=True)
    peak = peak_memory_of(lambda: receiver.decode(frame, max_size=1 << 20))
    assert peak < 4 << 20


def test_bomb_over_continuation_frames(bomb: bytes, tail_path: None) -> None:
    _, receiver = pair()
    # About 1000:1, so each 256-byte frame inflates to about 256 KiB.
    wire = fragments(bomb, range(256, len(bomb), 256))
    wire[0] = wire[0]._replace(rsv1=True)
    decoded = []

    def receive() -> None:
        # What the protocol core does: pass down the remaining budget.
        budget = 1 << 20
        for frame in wire:
            data = receiver.decode(frame, max_size=budget).data
            decoded.append(len(data))
            budget -= len(data)

    peak = peak_memory_of(receive)
    assert peak < 4 << 20
    assert 0 < len(decoded) < len(wire)
    assert sum(decoded) <= 1 << 20


@pytest.mark.parametrize("max_size", [0, 1, 4999, 5000, 5001, 1 << 20])
def test_max_size_exact_bound(max_size: int, tail_path: None) -> None:
    data = b"a" * 5000
    for cuts in [(), (2500,)]:
        sender, receiver = pair()
        wire = [sender.encode(frame) for frame in fragments(data, cuts)]
        budget = max_size
        if len(data) > max_size:
            with pytest.raises(PayloadTooBig):
                for frame in wire:
                    budget -= len(receiver.decode(frame, max_size=budget).data)
        else:
            received = b""
            for frame in wire:
                chunk = receiver.decode(frame, max_size=budget).data
                budget -= len(chunk)
                received += chunk
            assert received == data


def test_max_size_none_is_unbounded(tail_path: None) -> None:
    data = bytes(3 << 20)
    sender, receiver = pair()
    frame = sender.encode(Frame(Opcode.BINARY, data))
    assert receiver.decode(frame, max_size=None).data == data
    assert receiver.decode(frame._replace(data=raw_deflate([b""])[0])).data == b""


def test_max_size_counts_the_tail(tail_path: None) -> None:
    # Data whose last byte only comes out once the tail is appended.
    payload = raw_deflate([b"abc" * 100])[0]
    _, receiver = pair()
    with pytest.raises(PayloadTooBig):
        receiver.decode(Frame(Opcode.BINARY, payload, rsv1=True), max_size=299)
    _, receiver = pair()
    frame = receiver.decode(Frame(Opcode.BINARY, payload, rsv1=True), max_size=300)
    assert frame.data == b"abc" * 100


# --- properties --------------------------------------------------------------


@settings(deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    max_size=st.one_of(st.none(), st.integers(0, 2000)),
    window_bits=st.integers(8, 15),
    warm=st.booleans(),
    join_limit=st.sampled_from([0, 1 << 16]),
)
def test_arbitrary_compressed_payloads(
    payloads: list[bytes],
    max_size: int | None,
    window_bits: int,
    warm: bool,
    join_limit: int,
) -> None:
    sender, receiver = pair(window_bits=window_bits)
    if warm:  # a decompressor with history, as with context takeover
        message = far_repeats(8)
        assert receiver.decode(sender.encode(Frame(Opcode.BINARY, message))).data == (
            message
        )
    frames = [
        Frame(
            Opcode.BINARY if i == 0 else Opcode.CONT,
            payload,
            fin=i == len(payloads) - 1,
            rsv1=i == 0,
        )
        for i, payload in enumerate(payloads)
    ]
    budget = max_size
    try:
        with tail_join_limit(join_limit):
            for frame in frames:
                decoded = receiver.decode(frame, max_size=budget)
                assert isinstance(decoded.data, bytes)
                assert not decoded.rsv1
                if budget is not None:
                    assert len(decoded.data) <= budget
                    budget -= len(decoded.data)
    except (ProtocolError, PayloadTooBig):
        pass


@settings(deadline=None, max_examples=60)
@given(
    messages=st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=2000),
                st.text(max_size=500).map(str.encode),
                st.integers(0, 3000).map(lambda n: b"ab" * n),
            ),
            st.lists(st.integers(0, 4000), max_size=4),
            st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
        ),
        max_size=6,
    ),
    no_context_takeover=st.booleans(),
    window_bits=st.integers(8, 15),
    level=st.sampled_from([0, 1, 6, 9]),
    join_limit=st.sampled_from([0, 1 << 16]),
)
def test_round_trip_property(
    messages: list[tuple[bytes, list[int], Opcode]],
    no_context_takeover: bool,
    window_bits: int,
    level: int,
    join_limit: int,
) -> None:
    sender = pmd(
        local_no_context_takeover=no_context_takeover,
        local_max_window_bits=window_bits,
        compress_settings={"level": level},
    )
    receiver = pmd(
        remote_no_context_takeover=no_context_takeover,
        remote_max_window_bits=window_bits,
    )
    with tail_join_limit(join_limit):
        for data, cuts, opcode in messages:
            received, _ = send_message(sender, receiver, data, cuts, opcode)
            assert received == data


# --- interop with the websockets library's implementation -------------------

INTEROP_SETTINGS = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 9},
    {"server_max_window_bits": 11, "client_max_window_bits": 10},
    {
        "server_no_context_takeover": True,
        "client_no_context_takeover": True,
        "server_max_window_bits": 10,
        "client_max_window_bits": 9,
    },
]


def exchange_with_websockets(ours: PerMessageDeflate, theirs: Any) -> None:
    """Send fragmented and whole messages both ways between the two."""
    wsframes = pytest.importorskip("websockets.frames")
    data = far_repeats(9, seed=7)
    for cuts in [(), (3, 1000)]:
        for _ in range(2):
            # Ours → theirs.
            received = b""
            for frame in fragments(data, cuts):
                encoded = ours.encode(frame)
                their_frame = wsframes.Frame(
                    wsframes.Opcode(int(encoded.opcode)),
                    encoded.data,
                    encoded.fin,
                    encoded.rsv1,
                )
                received += theirs.decode(their_frame, max_size=1 << 20).data
            assert received == data
            # Theirs → ours.
            received = b""
            for frame in fragments(data, cuts):
                their_frame = wsframes.Frame(
                    wsframes.Opcode(int(frame.opcode)), frame.data, frame.fin
                )
                encoded = theirs.encode(their_frame)
                our_frame = Frame(
                    Opcode(int(encoded.opcode)), encoded.data, encoded.fin, encoded.rsv1
                )
                received += ours.decode(our_frame, max_size=1 << 20).data
            assert received == data


@pytest.mark.parametrize("kwargs", INTEROP_SETTINGS, ids=repr)
def test_our_client_with_websockets_server(kwargs: dict[str, Any]) -> None:
    wspmd = pytest.importorskip("websockets.extensions.permessage_deflate")
    client = ClientPerMessageDeflateFactory(
        **{"client_max_window_bits": True, **kwargs}
    )
    server = wspmd.ServerPerMessageDeflateFactory(**kwargs)
    response, theirs = server.process_request_params(client.get_request_params(), [])
    ours = client.process_response_params(response, [])
    exchange_with_websockets(ours, theirs)


@pytest.mark.parametrize("kwargs", INTEROP_SETTINGS, ids=repr)
def test_websockets_client_with_our_server(kwargs: dict[str, Any]) -> None:
    wspmd = pytest.importorskip("websockets.extensions.permessage_deflate")
    client = wspmd.ClientPerMessageDeflateFactory(**kwargs)
    server = ServerPerMessageDeflateFactory(**kwargs)
    response, ours = server.process_request_params(client.get_request_params(), [])
    theirs = client.process_response_params(response, [])
    exchange_with_websockets(ours, theirs)


# --- through the protocol core -----------------------------------------------


def protocol_pair(max_size: int | None = 1 << 20) -> tuple[Protocol, Protocol]:
    """A client and a server protocol that negotiated the defaults."""
    client_ext, server_ext, _ = negotiate(
        ClientPerMessageDeflateFactory(), ServerPerMessageDeflateFactory()
    )
    client = Protocol(Side.CLIENT, extensions=[client_ext], max_size=max_size)
    server = Protocol(Side.SERVER, extensions=[server_ext], max_size=max_size)
    return client, server


def test_protocol_round_trip() -> None:
    client, server = protocol_pair()
    data = far_repeats(12)
    client.send_binary(data[:1000], fin=False)
    client.send_ping(b"in between")
    client.send_continuation(data[1000:], fin=True)
    client.send_text(b"Hello")
    for chunk in client.data_to_send():
        server.receive_data(chunk)
    events = server.events_received()
    assert [frame.opcode for frame in events] == [
        Opcode.BINARY,
        Opcode.PING,
        Opcode.CONT,
        Opcode.TEXT,
    ]
    assert events[0].data + events[2].data == data
    assert events[3].data == b"Hello"
    # The server answered the ping; the pong isn't compressed either.
    server.send_text(b"Hello")
    for chunk in server.data_to_send():
        client.receive_data(chunk)
    assert [(f.opcode, f.data) for f in client.events_received()] == [
        (Opcode.PONG, b"in between"),
        (Opcode.TEXT, b"Hello"),
    ]


def test_protocol_bomb_closes_with_1009(bomb: bytes) -> None:
    _, server = protocol_pair()
    frame = Frame(Opcode.BINARY, bomb, rsv1=True)
    server.receive_data(b"".join(serialize_frame(frame, mask=True)))
    assert isinstance(server.failure, PayloadTooBig)
    assert server.close_sent is not None
    assert server.close_sent.code == 1009


def test_protocol_bad_data_closes_with_1002() -> None:
    _, server = protocol_pair()
    frame = Frame(Opcode.BINARY, b"\xff\xff", rsv1=True)
    server.receive_data(b"".join(serialize_frame(frame, mask=True)))
    assert isinstance(server.failure, ProtocolError)
    assert server.close_sent is not None
    assert server.close_sent.code == 1002
