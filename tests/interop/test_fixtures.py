"""The shared fixtures in ``tests/conftest.py`` do what the other tests rely on."""

from __future__ import annotations

import signal

import aiohttp
import pytest

from tests.conftest import DriverError


async def test_pbxws_process_serves_and_stops_on_sigterm(pbxws_process) -> None:
    """pbxws_process reports the bound ports, /ready answers, and SIGTERM exits 0."""
    server = await pbxws_process()
    assert server.port > 0 and server.metrics_port > 0
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/ready") as res:
            assert res.status == 200
        async with http.get(f"{server.metrics_url}/ready") as res:
            assert res.status == 200
    server.kill(signal.SIGTERM)
    assert await server.wait() == 0
    await server.wait_for_log("server_stopped")


async def test_pbxws_server_runs_in_process(pbxws_server) -> None:
    """pbxws_server starts Servers in this event loop, each on its own free ports."""
    servers = [await pbxws_server(), await pbxws_server()]
    assert servers[0].port != servers[1].port
    async with aiohttp.ClientSession() as http:
        for server in servers:
            async with http.get(f"http://127.0.0.1:{server.port}/ready") as res:
                assert res.status == 200


def test_redis_server_answers_ping_and_restarts(redis_server) -> None:
    """redis_server is a live redis-server that can be killed and restarted by pid."""
    assert redis_server.ping()
    first = redis_server.pid
    redis_server.kill()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.ping()
    assert redis_server.pid != first


async def test_node_driver_reports_failed_commands(node_driver) -> None:
    """A command the driver cannot carry out raises DriverError instead of hanging."""
    assert (await node_driver.send("ping"))["pong"] is True
    with pytest.raises(DriverError, match="unknown client"):
        await node_driver.send("subscribe", client="nobody", channel="x")
