"""WebSocket extensions (RFC 6455 §9), such as permessage-deflate (RFC 7692).

:mod:`~wssync.sansio.extensions.base` defines what an extension and its
negotiation look like; :mod:`~wssync.sansio.extensions.permessage_deflate`
implements the one extension in wide use.
"""

from __future__ import annotations

from wssync.sansio.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from wssync.sansio.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

__all__ = [
    "ClientExtensionFactory",
    "ClientPerMessageDeflateFactory",
    "Extension",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflateFactory",
]
