"""WebSocket extensions (RFC 6455 §9), such as permessage-deflate (RFC 7692)."""

from __future__ import annotations

__all__: list[str] = []
