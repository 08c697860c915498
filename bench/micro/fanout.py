"""``AppChannels.fan_out`` over 1,000 dummy subscribers: the registry's own cost.

The dummy ``send`` only counts, so this is the user-space loop alone: the
kernel write each real delivery adds (~5 µs on the bench machine) is not here.
``ns/op`` is per subscriber (per delivery).
"""

from __future__ import annotations

from _timer import bench

from pbxws.channels.registry import AppChannels
from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import channel_event


class Dummy:
    """A subscriber whose send does as little as possible."""

    __slots__ = ("n", "socket_id", "user_id")

    def __init__(self, i: int) -> None:
        self.socket_id = f"{i}.{i * 7}"
        self.user_id = None
        self.n = 0

    def send(self, frame: bytes) -> None:
        self.n += 1

    def close_soon(self, code: int, reason: str) -> None:
        pass


def main() -> None:
    n = 1000
    reg = AppChannels()
    for i in range(n):
        conn = Dummy(i)
        reg.add_connection(conn, -1)
        reg.subscribe("fanout", conn)
    frame = text_frame(channel_event("bench", "fanout", "1732590000123456"))
    bench(
        f"fan_out(1 channel x {n}) per subscriber",
        lambda: reg.fan_out("fanout", frame, None),
        per_call=n,
    )
    bench(
        f"fan_out(1 channel x {n}, except one) per subscriber",
        lambda: reg.fan_out("fanout", frame, "5.35"),
        per_call=n,
    )
    bench(
        "publish path per event: encode + frame + fan_out(1,000)",
        lambda: reg.fan_out(
            "fanout",
            text_frame(channel_event("bench", "fanout", "1732590000123456")),
            None,
        ),
    )


if __name__ == "__main__":
    main()
