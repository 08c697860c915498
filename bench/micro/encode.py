"""Encoding once per publish: ``channel_event`` + ``frames.text_frame``."""

from __future__ import annotations

from _timer import bench

from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import channel_event

SMALL = '{"t":1732590000123456}'
MEDIUM = (
    '{"call":{"id":"c-1234","from":"+4930123456","to":"+4940654321","state":"ringing"}}'
    * 2
)
LARGE = "x" * 10_000


def main() -> None:
    for label, data in (("~25 B", SMALL), ("~170 B", MEDIUM), ("10 KB", LARGE)):
        bench(
            f"channel_event({label} data)",
            lambda d=data: channel_event("bench", "presence-pbx-1", d),
        )
        payload = channel_event("bench", "presence-pbx-1", data)
        bench(f"text_frame({len(payload)} B payload)", lambda p=payload: text_frame(p))
        bench(
            f"channel_event + text_frame ({label})",
            lambda d=data: text_frame(channel_event("bench", "presence-pbx-1", d)),
        )


if __name__ == "__main__":
    main()
