"""Socket ids: ``<node>.<random>``, unique across a cluster."""

from __future__ import annotations

import secrets
from collections.abc import Container

__all__ = ["SocketIdFactory"]


class SocketIdFactory:
    """Makes socket ids that match ``^\\d+\\.\\d+$`` as the server SDKs require.

    The first part is random per node (fixed at start), the second random per
    connection; ids already live on this node are never handed out twice.
    """

    def __init__(self) -> None:
        # Random per-node prefix; two nodes share one with probability ~1e-10.
        self.node = str(secrets.randbelow(9 * 10**9) + 10**9)

    def new(self, live: Container[str]) -> str:
        """A fresh id not in ``live`` (a container of ids in use here)."""
        while True:
            candidate = f"{self.node}.{secrets.randbelow(10**10)}"
            if candidate not in live:
                return candidate
