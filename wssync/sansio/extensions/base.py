"""Base classes for WebSocket extensions (RFC 6455 §9).

An extension is negotiated in the opening handshake through the
``Sec-WebSocket-Extensions`` header, then transforms data frames on their way
in (:meth:`Extension.decode`) and out (:meth:`Extension.encode`).

Negotiation is split by side, because RFC 6455 §9.1 gives the client and the
server different jobs:

* a :class:`ClientExtensionFactory` builds the parameters of an offer, then
  checks the server's answer and builds the :class:`Extension`;
* a :class:`ServerExtensionFactory` checks an offer and builds both the
  parameters of the answer and the :class:`Extension`.

Parameters are ``(name, value)`` pairs, the value being ``None`` for a
parameter without value, exactly as the header parser produces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wssync.sansio.frames import Frame

__all__ = ["ClientExtensionFactory", "Extension", "ServerExtensionFactory"]


class Extension:
    """A negotiated extension, applied to every frame of a connection.

    The protocol core calls :meth:`encode` on each outgoing data frame and
    :meth:`decode` on each incoming frame, in the order of the negotiated
    extensions (RFC 6455 §9.1: decode in reverse order of encoding).

    Attributes:
        name: The extension token, as it appears in
            ``Sec-WebSocket-Extensions``.
    """

    name: str

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Transform an incoming frame.

        Args:
            frame: The frame as read from the wire (already unmasked).
            max_size: How many bytes of payload the rest of the message may
                still grow by, after decoding; ``None`` means no limit.

        Returns:
            The decoded frame; it may be ``frame`` itself when nothing changes.

        Raises:
            PayloadTooBig: The decoded payload would exceed ``max_size``.
            ProtocolError: The frame breaks the rules of the extension.
        """
        raise NotImplementedError

    def encode(self, frame: Frame) -> Frame:
        """Transform an outgoing frame.

        Args:
            frame: The frame as built by the application.

        Returns:
            The encoded frame; it may be ``frame`` itself when nothing changes.
        """
        raise NotImplementedError


class ClientExtensionFactory:
    """Negotiate an extension on the client side.

    Attributes:
        name: The extension token this factory offers.
    """

    name: str

    def get_request_params(self) -> list[tuple[str, str | None]]:
        """Build the parameters of the offer sent in the handshake request.

        Returns:
            ``(name, value)`` pairs; ``value`` is ``None`` for a bare parameter.
        """
        raise NotImplementedError

    def process_response_params(
        self,
        params: Sequence[tuple[str, str | None]],
        accepted_extensions: Sequence[Extension],
    ) -> Extension:
        """Check the server's answer to the offer and build the extension.

        Args:
            params: The parameters the server answered with.
            accepted_extensions: The extensions already accepted from the same
                response, in order.

        Returns:
            The extension, ready to encode and decode frames.

        Raises:
            NegotiationError: The answer is not an acceptable response to the
                offer; the client must fail the connection.
        """
        raise NotImplementedError


class ServerExtensionFactory:
    """Negotiate an extension on the server side.

    Attributes:
        name: The extension token this factory accepts.
    """

    name: str

    def process_request_params(
        self,
        params: Sequence[tuple[str, str | None]],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[tuple[str, str | None]], Extension]:
        """Check one offer from the client and, if it is acceptable, accept it.

        Args:
            params: The parameters of the offer.
            accepted_extensions: The extensions already accepted from the same
                request, in order.

        Returns:
            The parameters of the answer to send back, and the extension.

        Raises:
            NegotiationError: The offer is declined; the server may try the
                client's next offer, or go on without this extension.
        """
        raise NotImplementedError
