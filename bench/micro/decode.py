"""Decoding what clients send: ``pbxws.protocol.messages.decode_client_message``."""

from __future__ import annotations

from _timer import bench

from pbxws.protocol.messages import SubscribeData, decode_client_message, decode_data

SUBSCRIBE = (
    b'{"event":"pusher:subscribe","data":{"channel":"presence-room-42",'
    b'"auth":"app-key:3f1a4a3b0f8c5f6e1b2d9c7a8e6f5d4c3b2a1908f7e6d5c4b3a2918070605040",'
    b'"channel_data":"{\\"user_id\\":\\"42\\",\\"user_info\\":{\\"name\\":\\"Ann\\"}}"}}'
)
CLIENT_EVENT = (
    b'{"event":"client-typing","channel":"private-chat","data":{"user":"42"}}'
)
PING = b'{"event":"pusher:ping","data":{}}'


def main() -> None:
    bench("decode_client_message(pusher:ping)", lambda: decode_client_message(PING))
    bench(
        "decode_client_message(client event)",
        lambda: decode_client_message(CLIENT_EVENT),
    )
    bench(
        "decode_client_message(presence subscribe)",
        lambda: decode_client_message(SUBSCRIBE),
    )
    msg = decode_client_message(SUBSCRIBE)
    bench(
        "  + decode_data(SubscribeData)", lambda: decode_data(msg.data, SubscribeData)
    )


if __name__ == "__main__":
    main()
