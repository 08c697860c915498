"""Graceful drain of a real ``pbxws serve``: SIGTERM, not ready, spread 4200s, exit."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from pbxws.config import ServerConfig
from pbxws.server import drain_window
from tests.conftest import NodeDriver, PbxwsProcess, StartProcess, timeout

GRACE = 4.0  # seconds: shutdown_grace_period of the drained node
WINDOW = 2.0  # seconds: its drain_window
CLIENTS = 6


def _wall(record: dict[str, Any]) -> float:
    """The wall-clock time of a JSON log record (structlog's ISO UTC timestamp)."""
    return datetime.fromisoformat(
        record["timestamp"].replace("Z", "+00:00")
    ).timestamp()


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        return resp.status


async def _probes(session: aiohttp.ClientSession, server: PbxwsProcess) -> list[int]:
    """/ready on both ports and /accept-traffic, as load balancers ask them."""
    return [
        await _status(session, f"{server.metrics_url}/ready"),
        await _status(session, f"{server.url}/ready"),
        await _status(session, f"{server.url}/accept-traffic"),
    ]


async def test_sigterm_drains_pusher_js_clients_in_order(
    pbxws_process: StartProcess, node_driver: NodeDriver
) -> None:
    """SIGTERM: the node turns not ready, closes its pusher-js clients with 4200 spread over the drain window, then exits within the grace period."""
    server = await pbxws_process(
        env={
            "SOKETI_SHUTDOWN_GRACE_PERIOD": str(int(GRACE * 1000)),
            "PBXWS_SERVER_DRAIN_WINDOW": str(WINDOW),
        }
    )
    names = [f"c{i}" for i in range(CLIENTS)]
    for name in names:
        await node_driver.connect(name, server.port)
        await node_driver.subscribe(name, "news")
    async with aiohttp.ClientSession() as session:
        assert await _probes(session, server) == [200, 200, 200]
        since = node_driver.mark()
        closes: dict[str, tuple[float, dict[str, Any]]] = {}
        readiness_at_first_close: list[int] = []

        async def closed(name: str) -> None:
            event = await node_driver.expect(
                client=name, type="closed", since=since, wait=timeout() + WINDOW
            )
            closes[name] = (time.time(), event)
            if len(closes) == 1:
                readiness_at_first_close.extend(await _probes(session, server))

        watchers = [asyncio.create_task(closed(name)) for name in names]
        signalled = time.time()
        server.kill(signal.SIGTERM)
        await asyncio.gather(*watchers)
        status = await server.wait(GRACE + timeout())
        exited = time.time()

    started = await server.wait_for_log("drain_started")
    stopped = await server.wait_for_log("server_stopped")
    # Not ready first: the drain started before any close, and the probes said 503.
    assert started["drain_window"] == WINDOW
    assert started["connections"] == CLIENTS
    assert readiness_at_first_close == [503, 503, 503]
    times = sorted(t for t, _ in closes.values())
    assert _wall(started) <= times[0]
    # Every client was closed with 4200, and the closes were spread out...
    assert {event["code"] for _, event in closes.values()} == {4200}
    assert times[-1] - times[0] >= WINDOW / 2
    # ...within the drain window (plus the slack every wait in the tests gets).
    assert times[-1] - _wall(started) <= WINDOW + timeout(0.2)
    # Then the process exited cleanly, within the grace period.
    assert status == 0
    assert stopped["elapsed"] <= GRACE
    assert exited - signalled <= GRACE + timeout(0.4)
    for name in names:
        # pusher-js took the 4200 as "reconnect now", as it should.
        await node_driver.expect(
            client=name, type="state", previous="connected", current="connecting"
        )


async def test_new_sockets_are_refused_while_draining_and_a_second_signal_exits(
    pbxws_process: StartProcess,
) -> None:
    """During a drain new sockets get 4200 and probes say 503; a second SIGTERM exits at once."""
    server = await pbxws_process(
        env={"SOKETI_SHUTDOWN_GRACE_PERIOD": "60000", "PBXWS_SERVER_DRAIN_WINDOW": "50"}
    )
    url = f"{server.ws_url}/app/app-key?protocol=7"
    async with aiohttp.ClientSession() as session:
        # Two clients: the first is closed at once, the second only ~25 s later.
        clients = [await session.ws_connect(url) for _ in range(2)]
        for client in clients:
            assert "connection_established" in (await client.receive()).data
        server.kill(signal.SIGTERM)
        await server.wait_for_log("drain_started")
        assert await _probes(session, server) == [503, 503, 503]
        late = await session.ws_connect(url)
        refusal = json.loads((await late.receive(timeout=timeout())).data)
        assert refusal == {
            "event": "pusher:error",
            "data": {"message": "Server is closing; reconnect shortly.", "code": 4200},
        }
        assert (await late.receive(timeout=timeout())).type is aiohttp.WSMsgType.CLOSE
        assert late.close_code == 4200
        # The second signal: no more draining, the process leaves now.
        server.kill(signal.SIGTERM)
        assert await server.wait(timeout()) == 128 + signal.SIGTERM
        for client in clients:
            await client.close()


@pytest.mark.parametrize(
    ("grace", "window", "expected"),
    [(3.0, None, 1.5), (3.0, 1.0, 1.0), (3.0, 9.0, 3.0), (0.0, None, 0.0)],
)
def test_drain_window_defaults_to_half_the_grace_period(
    grace: float, window: float | None, expected: float
) -> None:
    """Unset, the window is half the grace period; it never exceeds the grace period."""
    server = ServerConfig(shutdown_grace_period=grace, drain_window=window)
    assert drain_window(server) == expected
