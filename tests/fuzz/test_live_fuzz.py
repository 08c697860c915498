"""A short fuzz run over live sockets (the long one: ``python -m tests.fuzz.live``).

``FUZZ_INPUTS`` (default 20000) and ``FUZZ_SEED`` change the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.conftest import PbxwsProcess

from .live import APP_KEY, SERVER_CONFIG, SERVER_ENV, Fuzzer

MB = 1024 * 1024


async def test_hostile_sockets_hurt_nobody_else(
    pbxws_process: Callable[..., Awaitable[PbxwsProcess]],
) -> None:
    """Attackers' garbage and floods leave bystanders, the process and its memory fine."""
    server = await pbxws_process(env=SERVER_ENV, config=SERVER_CONFIG)
    fuzzer = Fuzzer(
        server.port,
        server.pid,
        inputs=int(os.environ.get("FUZZ_INPUTS", "20000")),
        attackers=6,
        seed=int(os.environ.get("FUZZ_SEED", str(int(time.time())))),
        output=lambda: server.output.lines,
    )
    report = await fuzzer.run()
    print("\n" + report.summary())
    assert report.server_failures == [], "\n".join(report.server_failures[:20])
    assert report.bystander_problems == []
    assert report.ticks_sent > 0
    assert set(report.ticks_received.values()) == {report.ticks_sent}, report.summary()
    assert report.rss_peak - report.rss_start < 128 * MB, report.summary()
    assert report.rss_end - report.rss_start < 48 * MB, report.summary()
    # Still serving: a fresh client connects and subscribes.
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{server.ws_url}/app/{APP_KEY}?protocol=7") as ws,
    ):
        first: Any = await ws.receive_json()
        assert first["event"] == "pusher:connection_established"
        await ws.send_json({"event": "pusher:subscribe", "data": {"channel": "after"}})
        ok = await ws.receive_json()
        assert ok["event"] == "pusher_internal:subscription_succeeded"
