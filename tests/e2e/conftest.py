"""Fixtures of the end-to-end tests: a real browser and the PBX example's backend.

``browser`` runs ``tests/e2e/browser.mjs``: Debian's ``chromium`` (``PBXWS_CHROMIUM``
overrides the path) driven by ``playwright-core``, which never downloads a browser.
A missing chromium or ``node_modules`` fails the test with the command that installs
it; nothing here is skipped.

``pbx_backend`` runs ``examples/pbx/backend.py`` as a subprocess against a pbxws.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import (
    ROOT,
    JsonLinesProcess,
    ProcessOutput,
    _failed,
    _tail,
    start_node_script,
    timeout,
)

E2E_DIR = ROOT / "tests" / "e2e"
EXAMPLE_DIR = ROOT / "examples" / "pbx"

CHROMIUM_HINT = (
    "run scripts/setup as root (it installs Debian's chromium with apt-get), or "
    "`sudo apt-get install chromium`; elsewhere set PBXWS_CHROMIUM to a Chrome or "
    "Chromium executable. Never `npx playwright install`: the tests use the system "
    "browser through playwright-core."
)


def chromium_path() -> str:
    """The browser the tests drive; fails the test with an install hint if absent."""
    explicit = os.environ.get("PBXWS_CHROMIUM")
    found = explicit or shutil.which("chromium") or "/usr/bin/chromium"
    if not (Path(found).is_file() and os.access(found, os.X_OK)):
        pytest.fail(f"chromium not found at {found}: {CHROMIUM_HINT}", pytrace=False)
    return found


class BrowserError(Exception):
    """``browser.mjs`` could not carry out a command."""


class Browser(JsonLinesProcess):
    """pytest's handle on ``browser.mjs`` (one chromium, one context per page)."""

    error = BrowserError
    name = "browser.mjs"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__(proc)
        self.version = ""

    async def ready(self) -> None:
        msg = await self.wait_ready(timeout(4))
        self.version = str(msg.get("browser", ""))

    async def send(
        self, cmd: str, /, *, wait: float | None = None, **fields: Any
    ) -> Any:
        """A command, with the browser's longer default wait (pages load)."""
        __tracebackhide__ = True
        return await super().send(cmd, wait=(wait or timeout(2)) + 1, **fields)

    # -- conveniences ----------------------------------------------------------
    async def open(self, page: str, url: str, *, init: str | None = None) -> None:
        await self.send("open", page=page, url=url, init=init, wait=timeout(3))

    async def evaluate(self, page: str, expr: str) -> Any:
        return await self.send("evaluate", page=page, expr=expr)

    async def wait(self, page: str, expr: str, *, wait: float | None = None) -> Any:
        """Wait (polling every frame) until ``expr`` is truthy in ``page``; return it."""
        __tracebackhide__ = True
        limit = wait or timeout()
        try:
            return await self.send(
                "wait", page=page, expr=expr, timeout=int(limit * 1000), wait=limit
            )
        except BrowserError as exc:
            raise AssertionError(
                f"page {page}: `{expr}` not true within {limit} s ({exc})\n"
                f"{self.diagnostics()}"
            ) from None

    async def screenshot(self, page: str, path: Path) -> None:
        await self.send("screenshot", page=page, path=str(path))

    async def close_page(self, page: str) -> None:
        await self.send("close", page=page)

    def page_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "pageerror"]


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    """Headless Debian chromium under playwright-core (fails with an install hint)."""
    executable = chromium_path()
    proc = await start_node_script(
        E2E_DIR,
        "browser.mjs",
        "playwright-core",
        "browser",
        env={"PBXWS_CHROMIUM": executable},
    )
    driver = Browser(proc)
    try:
        try:
            await driver.ready()
        except (BrowserError, TimeoutError) as exc:
            pytest.fail(
                f"chromium ({executable}) did not start under playwright-core: {exc}\n"
                f"{CHROMIUM_HINT}",
                pytrace=False,
            )
        yield driver
    finally:
        await driver.close()
        if _failed(request):
            print(
                f"\n----- browser.mjs pid {proc.pid} -----\n{driver.diagnostics(200)}"
            )


# ---------------------------------------------------------------- the PBX backend
@dataclass
class PbxBackend:
    """``examples/pbx/backend.py`` running as a subprocess."""

    proc: asyncio.subprocess.Process
    output: ProcessOutput
    port: int
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        async with self.session.request(
            method,
            self.url + path,
            json=json_body,
            headers=headers,
            allow_redirects=False,
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def post(self, path: str, body: Any = None) -> Any:
        """POST a webhook; return the JSON answer (asserting 2xx)."""
        status, answer = await self.request("POST", path, json_body=body or {})
        assert 200 <= status < 300, (status, answer)
        return answer


StartBackend = Callable[..., Awaitable[PbxBackend]]


@pytest.fixture
async def pbx_backend(request: pytest.FixtureRequest) -> AsyncIterator[StartBackend]:
    """Factory: ``await pbx_backend(env={...})`` starts backend.py on a free port."""
    if not (EXAMPLE_DIR / "node_modules" / "laravel-echo").is_dir():
        pytest.fail(
            f"{EXAMPLE_DIR}/node_modules is missing: run scripts/setup", pytrace=False
        )
    started: list[PbxBackend] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout(2)))

    async def start(*, env: dict[str, str]) -> PbxBackend:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE_DIR / "backend.py"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            limit=2**22,
        )
        assert proc.stdout is not None
        output = ProcessOutput(proc.stdout)
        backend = PbxBackend(proc=proc, output=output, port=0, session=session)
        started.append(backend)
        try:
            record = await output.wait_for_record(
                lambda r: r.get("event") == "backend_started", timeout(3)
            )
        except (TimeoutError, EOFError):
            pytest.fail(
                f"backend.py did not start:\n{_tail(output.lines)}", pytrace=False
            )
        backend.port = int(record["port"])
        return backend

    yield start

    for backend in started:
        if backend.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(backend.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(backend.proc.wait(), timeout(2))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(backend.proc.pid, signal.SIGKILL)
                await backend.proc.wait()
        await backend.output.aclose()
        if _failed(request):
            print(f"\n----- backend.py pid {backend.proc.pid} -----")
            print(_tail(backend.output.lines, 80))
    await session.close()
