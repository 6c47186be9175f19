"""The permessage-deflate extension: compression of WebSocket messages (RFC 7692).

Negotiation (RFC 7692 §7.1) is done by :class:`ClientPerMessageDeflateFactory`
and :class:`ServerPerMessageDeflateFactory`; both support the four parameters
in every combination the RFC allows:

``server_no_context_takeover`` / ``client_no_context_takeover``
    The server / client resets its compressor after every message, so each
    message is compressed on its own (less memory between messages, lower
    compression ratio).
``server_max_window_bits`` / ``client_max_window_bits``
    Upper bound, as a power of two from 8 to 15, of the LZ77 window the server
    / client compresses with; the peer decompresses with the same window.

The negotiated :class:`PerMessageDeflate` then compresses outgoing data
messages and decompresses incoming ones, with decompression bounded by the
``max_size`` the protocol core passes in, so that a small compressed message
can never make the receiver allocate more than ``max_size`` bytes.

Defaults, chosen for servers holding many connections rather than for the
last percent of compression ratio (the trade-off websockets makes too):

* a 12-bit window (4 KiB) instead of zlib's 15 (32 KiB), and zlib's
  ``memLevel`` 5 instead of 8. A compressor then holds about 32 KiB instead of
  256 KiB (zlib: ``2**(wbits + 2) + 2**(memLevel + 9)`` bytes) and a
  decompressor about 11 KiB instead of 39 KiB (``2**wbits`` + 7 KiB), for
  output about 15% bigger on JSON messages of a few hundred bytes to 2 KB;
* zlib's default compression level, 6: on the same messages, levels 1 and 3
  are only about 1.4 times faster, for output 43% and 17% bigger.

The client offers ``client_max_window_bits=12``: it compresses with at most
4 KiB of window, and lets the server ask for less. It doesn't restrict the
server's window unless asked to. The server answers with 12 bits for both
directions (less if the client asks for less). zlib objects are created on
first use and, without context takeover, dropped after every message.

Every one of these is a constructor parameter of the factories.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

from wssync.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from wssync.sansio.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from wssync.sansio.frames import Frame, Opcode

__all__ = [
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
]

_NAME = "permessage-deflate"

# Module constants: reading an enum member off its class costs ten times more
# than a global, and these are read for every frame.
_CONT = Opcode.CONT
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_SYNC_FLUSH = zlib.Z_SYNC_FLUSH

# RFC 7692 §7.2.1: a compressed message is sent without the empty stored block
# that a sync flush ends with; §7.2.2: the receiver appends it back.
_EMPTY_UNCOMPRESSED_BLOCK = b"\x00\x00\xff\xff"
# Up to this size, a final frame's payload is copied to append that block and
# decompressed in one zlib call; beyond, the block is fed in a second call, so
# that a big payload isn't duplicated in memory.
_TAIL_JOIN_LIMIT = 64 * 1024

# RFC 7692 §7.1.2.1 / §7.1.2.2: window sizes are "a decimal integer value
# without leading zeroes between 8 to 15, inclusive". Looking the text up in
# this table rejects "08", "+9", " 9" and "16" alike.
_WINDOW_BITS_VALUES = {str(bits): bits for bits in range(8, 16)}
_MIN_WINDOW_BITS = 8
# RFC 7692 §7.1.2.1: without a window parameter, a window of up to 32 KiB.
_MAX_WINDOW_BITS = 15

# Defaults: see the module docstring for why.
DEFAULT_WINDOW_BITS = 12
DEFAULT_COMPRESS_SETTINGS: Mapping[str, int] = {"memLevel": 5}

_COMPRESS_SETTINGS_RANGES = {
    "level": range(-1, 10),
    "memLevel": range(1, 10),
    "strategy": range(0, 5),  # Z_DEFAULT_STRATEGY .. Z_FIXED
}


def _check_window_bits(name: str, value: object, *, allow_none: bool) -> None:
    """Check a window size given to a constructor (not one read from a header)."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _MIN_WINDOW_BITS <= value <= _MAX_WINDOW_BITS
    ):
        raise ValueError(f"{name} must be an int from 8 to 15, got {value!r}")


def _merge_compress_settings(
    compress_settings: Mapping[str, int] | None,
) -> dict[str, int]:
    """Overlay ``compress_settings`` on the defaults, checking every value."""
    settings = dict(DEFAULT_COMPRESS_SETTINGS)
    if compress_settings is not None:
        for key, value in compress_settings.items():
            if key == "wbits":
                # The window is what the handshake negotiates, not a setting.
                raise ValueError(
                    "compress_settings can't set wbits: use "
                    "server_max_window_bits / client_max_window_bits"
                )
            allowed = _COMPRESS_SETTINGS_RANGES.get(key)
            if allowed is None:
                raise ValueError(f"unknown compress setting: {key}")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"compress setting {key} must be an int")
            if value not in allowed:
                raise ValueError(f"compress setting {key} out of range: {value}")
            settings[key] = value
    return settings


def _decompress(decoder: zlib._Decompress, data: bytes, limit: int | None) -> bytes:
    """Run ``decoder`` on ``data``, producing at most ``limit`` bytes.

    Raises:
        PayloadTooBig: More than ``limit`` bytes would come out.
        ProtocolError: ``data`` isn't valid DEFLATE data.
    """
    try:
        # max_length = limit + 1: getting one byte more than allowed is how to
        # tell "exactly the limit" from "over the limit", and zlib stops there
        # instead of inflating a bomb in full.
        output = decoder.decompress(data, 0 if limit is None else limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"invalid compressed data: {exc}") from exc
    if limit is not None and len(output) > limit:
        raise PayloadTooBig(
            f"message over max_size once decompressed "
            f"(only {limit} more bytes were allowed)"
        )
    return output


class PerMessageDeflate(Extension):
    """The permessage-deflate extension, once negotiated.

    "Local" is the direction this endpoint compresses (its own messages),
    "remote" the direction it decompresses (the peer's). A server's local
    parameters are the ``server_*`` ones of the handshake, a client's the
    ``client_*`` ones.

    Args:
        remote_no_context_takeover: The peer resets its compressor after each
            message, so the decompressor is reset too.
        local_no_context_takeover: Reset the compressor after each message.
        remote_max_window_bits: Window of the peer's compressor (8..15); the
            decompressor uses exactly this window.
        local_max_window_bits: Largest window the compressor may use (8..15).
        compress_settings: zlib ``level``, ``memLevel`` and ``strategy``,
            overriding the defaults (``{"memLevel": 5}``).

    Raises:
        ValueError: A window size or a compress setting is out of range.
    """

    name = _NAME

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        _check_window_bits(
            "remote_max_window_bits", remote_max_window_bits, allow_none=False
        )
        _check_window_bits(
            "local_max_window_bits", local_max_window_bits, allow_none=False
        )
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.compress_settings = _merge_compress_settings(compress_settings)

        self._level = self.compress_settings.get("level", zlib.Z_DEFAULT_COMPRESSION)
        self._mem_level = self.compress_settings.get("memLevel", zlib.DEF_MEM_LEVEL)
        self._strategy = self.compress_settings.get("strategy", zlib.Z_DEFAULT_STRATEGY)
        self._encoder_wbits = local_max_window_bits
        if local_max_window_bits == 8:
            # A window of 8 bits (256 bytes) can't be asked of zlib for raw
            # deflate: zlib >= 1.2.9 rejects it ("Invalid initialization
            # option") and older versions silently compress with 9 bits. A
            # 9-bit compressor with its default strategy could, as far as its
            # documented contract goes, refer up to 512 bytes back, which a
            # peer that negotiated 256 bytes is entitled to reject. So compress
            # with 9 bits but with the Z_RLE strategy, which zlib documents as
            # "limit match distances to one": every back-reference is then one
            # byte back and fits any window. (zlib's current code happens to
            # cap 9-bit distances at 512 - 262 = 250 bytes anyway, but that is
            # an implementation detail, not a promise.) Z_HUFFMAN_ONLY, which
            # makes no back-reference at all, is kept if it was asked for.
            self._encoder_wbits = 9
            if self._strategy not in (zlib.Z_RLE, zlib.Z_HUFFMAN_ONLY):
                self._strategy = zlib.Z_RLE

        # Created lazily: a connection that never sends a message, or never
        # receives a compressed one, doesn't pay for a zlib context.
        self._encoder: zlib._Compress | None = None
        self._decoder: zlib._Decompress | None = None
        # Whether the message being sent / received is compressed: RFC 7692
        # §6.1 marks only the first frame of a message with RSV1.
        self._encoding = False
        self._decoding = False
        # Whether the decompressor was fed data not yet terminated by the
        # empty stored block appended at the end of each message.
        self._pending = False

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate("
            f"remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    # --- decoding -----------------------------------------------------------

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Decompress an incoming frame if it belongs to a compressed message.

        Control frames, and frames of messages sent without RSV1, are returned
        unchanged. Frames of a compressed message come back decompressed with
        RSV1 cleared.

        Args:
            frame: The incoming frame.
            max_size: How many bytes the message may still grow by once
                decompressed; ``None`` for no limit.

        Returns:
            The decoded frame.

        Raises:
            PayloadTooBig: Decompressing would exceed ``max_size``; no more
                than ``max_size + 1`` bytes are ever produced to find out.
            ProtocolError: The payload isn't valid DEFLATE data, or RSV1 is
                set on a frame other than the first frame of a data message.
        """
        opcode, data, fin, rsv1, rsv2, rsv3 = frame
        if opcode in (_TEXT, _BINARY):
            if not rsv1:
                # RFC 7692 §6: compression is chosen per message; this one was
                # sent as is and doesn't touch the decompressor's window.
                self._decoding = False
                return frame
            self._decoding = True
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = zlib.decompressobj(
                    wbits=-self.remote_max_window_bits
                )
        elif opcode == _CONT:
            if rsv1:
                # RFC 7692 §6.1: RSV1 is set on the first frame of a message
                # only; "an endpoint ... MUST _Fail the WebSocket Connection_".
                raise ProtocolError("RSV1 set on a continuation frame")
            if not self._decoding:
                return frame
            decoder = self._decoder
            assert decoder is not None
        else:
            if rsv1:
                # RFC 7692 §6.1: control frames are never compressed.
                raise ProtocolError("RSV1 set on a control frame")
            return frame

        if data:
            if fin and len(data) <= _TAIL_JOIN_LIMIT:
                # RFC 7692 §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to
                # the tail end of the payload of the message" and decompress.
                # Copying a small payload costs less than a second zlib call,
                # which allocates an output buffer even to return nothing.
                with_tail = True
                data += _EMPTY_UNCOMPRESSED_BLOCK
            else:
                with_tail = False
            data = _decompress(decoder, data, max_size)
            if decoder.eof:
                data = self._inflate_after_final_block(data, max_size, with_tail)
            else:
                self._pending = not with_tail

        if fin:
            if self._pending:
                # RFC 7692 §7.2.2 again, for a big payload: the tail is fed on
                # its own rather than copying the payload to append it.
                tail = self._inflate_tail(
                    None if max_size is None else max_size - len(data)
                )
                if tail:
                    data += tail
            self._decoding = False
            if self.remote_no_context_takeover:
                # RFC 7692 §7.1.1: the peer starts every message with an empty
                # window; dropping the decompressor also frees its memory
                # until the next message.
                self._decoder = None

        # Frame(...) rather than frame._replace(...): twice as fast.
        return Frame(opcode, data, fin, False, rsv2, rsv3)

    def _inflate_after_final_block(
        self, output: bytes, limit: int | None, with_tail: bool
    ) -> bytes:
        """Go on decompressing after a DEFLATE block with BFINAL set.

        RFC 7692 §7.2.3.4 allows a sender to end its data with a block whose
        BFINAL bit is set. That ends the DEFLATE stream: zlib puts whatever
        follows in ``unused_data`` and would silently ignore any further input.
        What follows is therefore decompressed as a new stream, and so is the
        next message. A peer that still refers to data from before the final
        block gets a ProtocolError ("invalid distance too far back"), never
        silently wrong data.

        Args:
            output: What the ended stream produced.
            limit: How many bytes ``output`` was allowed to be.
            with_tail: The input ended with the empty stored block appended
                by :meth:`decode`. Those bytes are the receiver's, not the
                sender's: they are dropped from what follows the final block,
                and :meth:`decode` appends them again if a new stream still
                needs terminating.
        """
        parts = [output]
        decoder = self._decoder
        assert decoder is not None
        while decoder.eof:
            data = decoder.unused_data
            if with_tail:
                # unused_data is a suffix of the input, which ended with the
                # tail; if it is shorter, the tail ended the stream itself.
                data = data[:-4]
                with_tail = False
            decoder = self._decoder = zlib.decompressobj(
                wbits=-self.remote_max_window_bits
            )
            if not data:
                self._pending = False
                break
            if limit is not None:
                limit -= len(parts[-1])
            parts.append(_decompress(decoder, data, limit))
        else:
            self._pending = True
        return b"".join(parts)

    def _inflate_tail(self, limit: int | None) -> bytes:
        """Feed the empty stored block that ends every compressed message."""
        decoder = self._decoder
        assert decoder is not None
        output = _decompress(decoder, _EMPTY_UNCOMPRESSED_BLOCK, limit)
        if decoder.eof:
            # The message's data ended inside a final block, which the tail
            # completed; what is left over is only the tail's own bytes.
            self._decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        self._pending = False
        return output

    # --- encoding -----------------------------------------------------------

    def encode(self, frame: Frame) -> Frame:
        """Compress an outgoing data frame.

        Every data message is compressed: its first frame gets RSV1, its
        continuation frames don't (RFC 7692 §6.1). Control frames are
        returned unchanged.

        Args:
            frame: The outgoing frame.

        Returns:
            The encoded frame.
        """
        opcode, data, fin, rsv1, rsv2, rsv3 = frame
        if opcode in (_TEXT, _BINARY):
            encoder = self._encoder
            if encoder is None:
                encoder = self._encoder = zlib.compressobj(
                    self._level,
                    zlib.DEFLATED,
                    -self._encoder_wbits,
                    self._mem_level,
                    self._strategy,
                )
            self._encoding = True
            rsv1 = True
        elif opcode == _CONT and self._encoding:
            encoder = self._encoder
            assert encoder is not None
        else:
            # RFC 7692 §6.1: control frames are never compressed. (A
            # continuation without a compressed message in progress can't
            # happen: every message this extension sends is compressed.)
            return frame

        head = encoder.compress(data)
        # A sync flush after every frame sends everything compressed so far:
        # a fragment is on the wire when send returns, not when the message
        # ends. It always ends with an empty stored block, 00 00 ff ff.
        tail = encoder.flush(_SYNC_FLUSH)
        if fin:
            # RFC 7692 §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff
            # 0xff) from the tail end" of the message. Earlier frames keep
            # theirs: it is only removed once, at the end of the message.
            tail = tail[:-4]
            self._encoding = False
            if self.local_no_context_takeover:
                # RFC 7692 §7.1.1: the next message starts with an empty
                # window; a new compressor is the only way zlib offers.
                self._encoder = None
        # zlib buffers small inputs, so head is usually empty and the common
        # case makes no copy.
        data = head + tail if head else tail
        return Frame(opcode, data, fin, rsv1, rsv2, rsv3)


def _parse_window_bits(name: str, value: str | None) -> int:
    """Read the value of a window parameter from a header."""
    bits = None if value is None else _WINDOW_BITS_VALUES.get(value)
    if bits is None:
        # RFC 7692 §7: an invalid value makes the server decline the offer
        # and the client fail the connection.
        raise NegotiationError(f"invalid value for {name}: {value!r}")
    return bits


def _parse_params(
    params: Sequence[tuple[str, str | None]], *, is_offer: bool
) -> tuple[bool, bool, int | None, int | bool | None]:
    """Read the parameters of an offer or a response.

    Returns:
        ``server_no_context_takeover``, ``client_no_context_takeover``,
        ``server_max_window_bits`` (``None`` if absent) and
        ``client_max_window_bits`` (``None`` if absent, ``True`` if present
        without value, which only an offer may do).

    Raises:
        NegotiationError: RFC 7692 §7: a parameter is unknown, repeated, or has
            an invalid value.
    """
    server_no_context_takeover = False
    client_no_context_takeover = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            # RFC 7692 §7: "multiple extension parameters with the same name".
            raise NegotiationError(f"duplicate parameter {name}")
        seen.add(name)
        if name == "server_no_context_takeover":
            # RFC 7692 §7.1.1.1: "This extension parameter has no value."
            if value is not None:
                raise NegotiationError(f"unexpected value for {name}: {value!r}")
            server_no_context_takeover = True
        elif name == "client_no_context_takeover":
            # RFC 7692 §7.1.1.2: "This extension parameter has no value."
            if value is not None:
                raise NegotiationError(f"unexpected value for {name}: {value!r}")
            client_no_context_takeover = True
        elif name == "server_max_window_bits":
            # RFC 7692 §7.1.2.1: always with a value, offer or response.
            server_max_window_bits = _parse_window_bits(name, value)
        elif name == "client_max_window_bits":
            # RFC 7692 §7.1.2.2: an offer may carry it without value ("I
            # support this parameter in the response"); a response must
            # give a value.
            if value is None and is_offer:
                client_max_window_bits = True
            else:
                client_max_window_bits = _parse_window_bits(name, value)
        else:
            # RFC 7692 §7: "an extension parameter not defined for use in an
            # offer" / "in a response".
            raise NegotiationError(f"unknown parameter {name}")
    return (
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    )


def _check_not_accepted(accepted_extensions: Sequence[Extension]) -> None:
    """Refuse a second permessage-deflate: both would claim RSV1."""
    for extension in accepted_extensions:
        if extension.name == _NAME:
            raise NegotiationError(f"{_NAME} already negotiated")


class ClientPerMessageDeflateFactory(ClientExtensionFactory):
    """Offer permessage-deflate and check the server's answer.

    Args:
        server_no_context_takeover: Ask the server to reset its compressor
            after each message (RFC 7692 §7.1.1.1); the connection fails if it
            doesn't agree.
        client_no_context_takeover: Tell the server this client resets its
            compressor after each message (§7.1.1.2), and do so. The server
            may also require it, whatever this says.
        server_max_window_bits: Ask the server to compress with a window of at
            most ``2**server_max_window_bits`` bytes (8..15); ``None`` leaves
            it free (up to 15). The server may answer with a smaller value,
            never a bigger one (§7.1.2.1).
        client_max_window_bits: Offer ``client_max_window_bits``, which lets
            the server cap the client's window (§7.1.2.2). An int (8..15) is
            also the largest window this client will compress with, whatever
            the server answers; ``True`` offers the parameter without value
            (window 15 unless the server says less); ``None`` or ``False``
            doesn't offer it. Default 12: see the module docstring.
        compress_settings: zlib ``level``, ``memLevel`` and ``strategy``,
            overriding the defaults (``{"memLevel": 5}``).

    Raises:
        ValueError: A window size or a compress setting is out of range.
    """

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = DEFAULT_WINDOW_BITS,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        _check_window_bits(
            "server_max_window_bits", server_max_window_bits, allow_none=True
        )
        if client_max_window_bits is False:
            client_max_window_bits = None
        if client_max_window_bits is not True:
            _check_window_bits(
                "client_max_window_bits", client_max_window_bits, allow_none=True
            )
        _merge_compress_settings(compress_settings)  # fail early, not later
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_settings = compress_settings

    def __repr__(self) -> str:
        return (
            f"ClientPerMessageDeflateFactory("
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits})"
        )

    def get_request_params(self) -> list[tuple[str, str | None]]:
        """Build the parameters of the offer.

        Returns:
            The parameters, in the order of RFC 7692 §7.1.
        """
        params: list[tuple[str, str | None]] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits is not None:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def process_response_params(
        self,
        params: Sequence[tuple[str, str | None]],
        accepted_extensions: Sequence[Extension],
    ) -> PerMessageDeflate:
        """Check the server's answer and build the extension.

        Args:
            params: The parameters of the server's answer.
            accepted_extensions: Extensions accepted before this one.

        Returns:
            The negotiated extension.

        Raises:
            NegotiationError: RFC 7692 §7: the answer has an unknown, repeated
                or invalid parameter, or a configuration this client didn't
                offer and can't honour.
        """
        _check_not_accepted(accepted_extensions)
        (
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        ) = _parse_params(params, is_offer=False)

        # RFC 7692 §7.1.1.1: "A server accepts an extension negotiation offer
        # that includes the "server_no_context_takeover" extension parameter
        # by including [it] in the corresponding extension negotiation
        # response". The server may also add it unasked: nothing to check.
        if self.server_no_context_takeover and not server_no_context_takeover:
            raise NegotiationError("server_no_context_takeover not accepted")

        # RFC 7692 §7.1.1.2: the server may add client_no_context_takeover
        # unasked; if this client offered it, it keeps its word either way.
        local_no_context_takeover = (
            client_no_context_takeover or self.client_no_context_takeover
        )

        # RFC 7692 §7.1.2.1: an offered server_max_window_bits is accepted
        # "with the same or smaller value"; the server may also add one
        # unasked, which only ever makes its window smaller.
        if self.server_max_window_bits is not None:
            if server_max_window_bits is None:
                raise NegotiationError("server_max_window_bits not accepted")
            if server_max_window_bits > self.server_max_window_bits:
                raise NegotiationError(
                    f"server_max_window_bits={server_max_window_bits} is larger "
                    f"than the offered {self.server_max_window_bits}"
                )
        remote_max_window_bits = (
            _MAX_WINDOW_BITS
            if server_max_window_bits is None
            else server_max_window_bits
        )

        # RFC 7692 §7.1.2.2: "If a received extension negotiation offer doesn't
        # have the "client_max_window_bits" extension parameter, the
        # corresponding extension negotiation response to the offer MUST NOT
        # include the "client_max_window_bits" extension parameter."
        if self.client_max_window_bits is None:
            if client_max_window_bits is not None:
                raise NegotiationError("client_max_window_bits wasn't offered")
            local_max_window_bits = _MAX_WINDOW_BITS
        else:
            # The server "may either ignore this value or use this value" of
            # the offer: any answer from 8 to 15 is valid. Compressing with
            # the smaller of the offered and answered windows honours both.
            assert client_max_window_bits is not True  # not in a response
            local_max_window_bits = (
                _MAX_WINDOW_BITS
                if client_max_window_bits is None
                else client_max_window_bits
            )
            if self.client_max_window_bits is not True:
                local_max_window_bits = min(
                    local_max_window_bits, self.client_max_window_bits
                )

        return PerMessageDeflate(
            remote_no_context_takeover=server_no_context_takeover,
            local_no_context_takeover=local_no_context_takeover,
            remote_max_window_bits=remote_max_window_bits,
            local_max_window_bits=local_max_window_bits,
            compress_settings=self.compress_settings,
        )


class ServerPerMessageDeflateFactory(ServerExtensionFactory):
    """Accept a client's permessage-deflate offer.

    Args:
        server_no_context_takeover: Reset the server's compressor after each
            message, even if the client didn't ask (RFC 7692 §7.1.1.1). When
            the client asks, the server always agrees.
        client_no_context_takeover: Require the client to reset its compressor
            after each message (§7.1.1.2). When the client offers it, the
            server always agrees.
        server_max_window_bits: Largest window the server compresses with
            (8..15), sent even when the client didn't ask; a client asking
            for less gets less. ``None``: whatever the client asks, else 15.
        client_max_window_bits: Largest window the client may compress with
            (8..15). RFC 7692 §7.1.2.2 only lets the server say so when the
            client offered ``client_max_window_bits``; otherwise the client
            may use up to 15, unless ``require_client_max_window_bits``.
            ``None``: whatever the client offered.
        compress_settings: zlib ``level``, ``memLevel`` and ``strategy``,
            overriding the defaults (``{"memLevel": 5}``).
        require_client_max_window_bits: Decline offers without
            ``client_max_window_bits``, so no client compresses with a window
            bigger than ``client_max_window_bits``.

    Raises:
        ValueError: A window size or a compress setting is out of range.
    """

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = DEFAULT_WINDOW_BITS,
        client_max_window_bits: int | None = DEFAULT_WINDOW_BITS,
        compress_settings: Mapping[str, int] | None = None,
        require_client_max_window_bits: bool = False,
    ) -> None:
        _check_window_bits(
            "server_max_window_bits", server_max_window_bits, allow_none=True
        )
        _check_window_bits(
            "client_max_window_bits", client_max_window_bits, allow_none=True
        )
        if require_client_max_window_bits and client_max_window_bits is None:
            raise ValueError(
                "require_client_max_window_bits needs client_max_window_bits"
            )
        _merge_compress_settings(compress_settings)  # fail early, not later
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_settings = compress_settings
        self.require_client_max_window_bits = require_client_max_window_bits

    def __repr__(self) -> str:
        return (
            f"ServerPerMessageDeflateFactory("
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits}, "
            f"require_client_max_window_bits="
            f"{self.require_client_max_window_bits})"
        )

    def process_request_params(
        self,
        params: Sequence[tuple[str, str | None]],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[tuple[str, str | None]], PerMessageDeflate]:
        """Accept an offer, narrowing it to this server's settings.

        Args:
            params: The parameters of the offer.
            accepted_extensions: Extensions accepted before this one.

        Returns:
            The parameters of the answer and the negotiated extension.

        Raises:
            NegotiationError: RFC 7692 §7: the offer has an unknown, repeated
                or invalid parameter, or lacks ``client_max_window_bits`` when
                it is required; the server declines this offer.
        """
        _check_not_accepted(accepted_extensions)
        (
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        ) = _parse_params(params, is_offer=True)

        # RFC 7692 §7.1.1.1: accepted by including it; "A server MAY include
        # the "server_no_context_takeover" extension parameter ... even if the
        # extension negotiation offer ... didn't include" it.
        server_no_context_takeover = (
            server_no_context_takeover or self.server_no_context_takeover
        )

        # RFC 7692 §7.1.1.2: the server may always include it. When the
        # client offered it, echoing it tells both sides the same thing.
        client_no_context_takeover = (
            client_no_context_takeover or self.client_no_context_takeover
        )

        # RFC 7692 §7.1.2.1: answer an offered value "with the same or smaller
        # value"; the server may also include the parameter unasked. Every
        # value from 8 to 15 can be honoured (8: see PerMessageDeflate), so an
        # offer is never declined for its window.
        if server_max_window_bits is None:
            server_max_window_bits = self.server_max_window_bits
        elif self.server_max_window_bits is not None:
            server_max_window_bits = min(
                server_max_window_bits, self.server_max_window_bits
            )

        # RFC 7692 §7.1.2.2: the response MUST NOT include
        # client_max_window_bits unless the offer did; an offered value may be
        # ignored or lowered.
        if client_max_window_bits is None:
            if self.require_client_max_window_bits:
                raise NegotiationError("client_max_window_bits required")
        elif client_max_window_bits is True:
            client_max_window_bits = self.client_max_window_bits
        elif self.client_max_window_bits is not None:
            client_max_window_bits = min(
                client_max_window_bits, self.client_max_window_bits
            )
        # else: echo the client's own value, so both ends state the window.

        response: list[tuple[str, str | None]] = []
        if server_no_context_takeover:
            response.append(("server_no_context_takeover", None))
        if client_no_context_takeover:
            response.append(("client_no_context_takeover", None))
        if server_max_window_bits is not None:
            response.append(("server_max_window_bits", str(server_max_window_bits)))
        if client_max_window_bits is not None:
            response.append(("client_max_window_bits", str(client_max_window_bits)))

        extension = PerMessageDeflate(
            remote_no_context_takeover=client_no_context_takeover,
            local_no_context_takeover=server_no_context_takeover,
            remote_max_window_bits=(
                _MAX_WINDOW_BITS
                if client_max_window_bits is None
                else client_max_window_bits
            ),
            local_max_window_bits=(
                _MAX_WINDOW_BITS
                if server_max_window_bits is None
                else server_max_window_bits
            ),
            compress_settings=self.compress_settings,
        )
        return response, extension
