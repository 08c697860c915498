"""Messages between nodes on the Redis pub/sub bus: tagged, typed, msgpack."""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["Broadcast", "Message", "Terminate", "UserStatus", "decode", "encode"]


class Broadcast(msgspec.Struct, tag="b", array_like=True, frozen=True):
    """A pre-framed event for every subscriber of a channel, on every node."""

    node: str
    app_id: str
    channel: str
    frame: bytes
    except_socket: str | None = None


class Terminate(msgspec.Struct, tag="t", array_like=True, frozen=True):
    """Close every connection signed in as ``user_id`` (terminate_connections)."""

    node: str
    app_id: str
    user_id: str


class UserStatus(msgspec.Struct, tag="u", array_like=True, frozen=True):
    """A signed-in user came online or went offline (watchlist events)."""

    node: str
    app_id: str
    user_id: str
    online: bool
    # Version of the change (see :mod:`pbxws.adapters.lua`); older ones lose.
    version: int


Message = Broadcast | Terminate | UserStatus

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """Bytes to PUBLISH."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """Parse a bus message.

    Raises:
        msgspec.DecodeError: If ``data`` is not a bus message (another
            deployment sharing the channel name); then it must be ignored.
    """
    message: Message = _decoder.decode(data)
    return message
