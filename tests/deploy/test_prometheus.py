"""The Prometheus files of ``deploy/`` pass promtool, and a real Prometheus reads pbxws."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartProcess, free_port, timeout

from .conftest import DEPLOY

RULES = DEPLOY / "prometheus" / "alerts.yml"


def _check(*argv: str | Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_accepts_the_scrape_config(promtool: Path) -> None:
    """`promtool check config` accepts prometheus.yml and the rule file it names."""
    out = _check(promtool, "check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert "1 rule files found" in out


def test_promtool_accepts_the_alert_rules(promtool: Path) -> None:
    """`promtool check rules` accepts every alert."""
    out = _check(promtool, "check", "rules", RULES)
    assert "SUCCESS" in out


def test_alerts_fire_as_their_unit_tests_say(promtool: Path) -> None:
    """`promtool test rules` runs the alerts against synthetic series."""
    _check(promtool, "test", "rules", DEPLOY / "prometheus" / "alerts.test.yml")


class Prometheus:
    """A throw-away Prometheus on a free port, scraping every second."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    async def get(
        self, session: aiohttp.ClientSession, path: str, **params: str
    ) -> Any:
        async with session.get(f"{self.url}{path}", params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def query_until(
        self,
        session: aiohttp.ClientSession,
        query: str,
        wanted: str,
    ) -> list[dict[str, Any]]:
        """Ask ``query`` until some series has the value ``wanted`` (scrapes take a moment)."""
        async with asyncio.timeout(timeout(4)):
            while True:
                body = await self.get(session, "/api/v1/query", query=query)
                result = body["data"]["result"]
                if any(series["value"][1] == wanted for series in result):
                    return list(result)
                await asyncio.sleep(0.2)  # the next scrape is at most 1 s away


@contextlib.asynccontextmanager
async def run_prometheus(
    binary: Path, workdir: Path, metrics_port: int
) -> AsyncIterator[Prometheus]:
    """Start Prometheus on the deploy rules with a job scraping ``metrics_port``."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        f"rule_files: [{str(RULES)!r}]\n"
        "scrape_configs:\n"
        "  - job_name: pbxws\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    log = (workdir / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
        cwd=workdir,
    )
    server = Prometheus(proc, port)
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout(3)):
            while True:  # ready once its TSDB and web server are up
                if proc.returncode is not None:
                    pytest.fail(
                        "prometheus exited:\n"
                        + (workdir / "prometheus.log").read_text(),
                        pytrace=False,
                    )
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{server.url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield server
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout())
            except TimeoutError:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        log.close()


async def test_a_real_prometheus_scrapes_pbxws_and_evaluates_the_alerts(
    pbxws_process: StartProcess, prometheus: Path, tmp_path: Path
) -> None:
    """Prometheus scrapes `pbxws serve`, its query API returns pbxws's series, and every alert evaluates cleanly."""
    server = await pbxws_process()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{server.ws_url}/app/app-key?protocol=7") as client,
    ):
        assert "connection_established" in (await client.receive()).data
        async with run_prometheus(prometheus, tmp_path, server.metrics_port) as prom:
            (series,) = await prom.query_until(
                session, 'soketi_connected{app_id="app-id"}', "1"
            )
            assert series["metric"]["job"] == "pbxws"
            assert series["metric"]["port"] == str(server.port)
            await prom.query_until(session, 'up{job="pbxws"}', "1")
            await prom.query_until(session, "soketi_ready", "1")
            # Soketi's counter without a _total suffix keeps its name end to end.
            counted = await prom.query_until(
                session, 'soketi_new_connections_total{app_id="app-id"}', "1"
            )
            assert counted
            received = await prom.get(
                session, "/api/v1/query", query="soketi_socket_received_bytes"
            )
            assert received["data"]["result"], "soketi_socket_received_bytes is missing"
            # Every alert rule has run against the real series without an error.
            async with asyncio.timeout(timeout(2)):
                while True:
                    body = await prom.get(session, "/api/v1/rules")
                    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
                    # Never evaluated yet: Go's zero time, 0001-01-01.
                    if rules and not any(
                        r["lastEvaluation"].startswith("0001") for r in rules
                    ):
                        break
                    await asyncio.sleep(0.2)
            assert {r["health"] for r in rules} == {"ok"}, [
                (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
            ]
