#!/usr/bin/env python3
"""Run the PBX demo: pbxws, the example backend and the call simulator, together.

Started by ``examples/pbx/run`` (which first installs what is missing). Prints the
URLs to open, restarts pbxws if it stops (``kill`` its pid to watch the dashboards
reconnect), and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
APP = {"id": "1", "key": "pbxappkey", "secret": "pbxappsecret"}  # the seed's .env


class Child:
    """One subprocess; its output goes to a log file, JSON lines are kept."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log
        self.proc: asyncio.subprocess.Process | None = None
        self.records: list[dict[str, Any]] = []
        self._log: TextIO | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    async def start(self) -> None:
        self._log = self.log_path.open("a")
        self.records = []
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches run.py only; it stops the rest
        )
        self._pump = asyncio.create_task(self._copy())

    async def _copy(self) -> None:
        if self.proc is None or self.proc.stdout is None or self._log is None:
            return
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace")
            self._log.write(text)
            self._log.flush()
            with contextlib.suppress(ValueError):
                record = json.loads(text)
                if isinstance(record, dict):
                    self.records.append(record)

    async def wait_for(self, event: str, seconds: float = 15.0) -> dict[str, Any]:
        """The first JSON line whose ``event`` is ``event``; SystemExit if none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            found = next((r for r in self.records if r.get("event") == event), None)
            if found is not None:
                return found
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = self.log_path.read_text().splitlines()[-15:]
        raise SystemExit(
            f"{self.name} did not start ({' '.join(self.argv)}):\n  "
            + "\n  ".join(tail)
        )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 2)
        if self._log is not None:
            self._log.close()


async def main(args: argparse.Namespace) -> int:
    venv_bin = Path(sys.executable).parent
    pbxws_bin = venv_bin / "pbxws"
    if not pbxws_bin.exists():
        raise SystemExit(f"{pbxws_bin} missing: run scripts/setup --example")
    logs = Path(tempfile.mkdtemp(prefix="pbx-example-"))
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOKETI_", "PBXWS_"))
    }
    base_env["PYTHONUNBUFFERED"] = "1"
    pbxws = Child(
        "pbxws",
        [
            str(pbxws_bin),
            "serve",
            "--host",
            args.host,
            "--port",
            str(args.ws_port),
            "--metrics-port",
            str(args.metrics_port),
        ],
        {
            **base_env,
            "SOKETI_DEFAULT_APP_ID": APP["id"],
            "SOKETI_DEFAULT_APP_KEY": APP["key"],
            "SOKETI_DEFAULT_APP_SECRET": APP["secret"],
            # pusher-js sign-in (the dashboard calls Echo.connector.signin()).
            "SOKETI_DEFAULT_APP_USER_AUTHENTICATION": "true",
            "SOKETI_SHUTDOWN_GRACE_PERIOD": "1000",
        },
        logs / "pbxws.log",
    )
    await pbxws.start()
    started = await pbxws.wait_for("server_started")
    ws_port = int(started["port"])
    # Later restarts reuse the port the browsers know.
    pbxws.argv[pbxws.argv.index("--port") + 1] = str(ws_port)

    backend = Child(
        "backend",
        [
            sys.executable,
            str(HERE / "backend.py"),
            *("--host", args.host, "--port", str(args.http_port)),
        ],
        {
            **base_env,
            "PUSHER_APP_ID": APP["id"],
            "PUSHER_APP_KEY": APP["key"],
            "PUSHER_APP_SECRET": APP["secret"],
            "PUSHER_HOST": "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host,
            "PUSHER_PORT": str(ws_port),
            "PUSHER_SCHEME": "http",
        },
        logs / "backend.log",
    )
    children = [pbxws, backend]
    try:
        await backend.start()
        url = (await backend.wait_for("backend_started"))["url"].rstrip("/")
        if not args.no_simulator:
            simulator = Child(
                "simulator",
                [
                    sys.executable,
                    str(HERE / "simulator.py"),
                    "--verbose",
                    "--backend",
                    url,
                ],
                base_env,
                logs / "simulator.log",
            )
            children.append(simulator)
            await simulator.start()

        print(
            f"""
PBX live-calls demo is running.

  Open       {url}/login            pick a user
             {url}/login?user=1     Alice, Acme Dental (organization 1)
             {url}/login?user=2     Bob, organization 1 (in a private window)
             {url}/login?user=4     Dave, Globex Plumbing (organization 2)
  Health     {url}/api/v1/websocket/health
  pbxws      ws://{args.host}:{ws_port}  pid {pbxws.pid}  (kill it to watch the
             dashboards reconnect: it is started again on the same port)
  Logs       {logs}/

Ctrl-C stops everything.""",
            flush=True,
        )

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            waits = {asyncio.create_task(c.proc.wait()): c for c in children if c.proc}
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                [*waits, stopper], return_when=asyncio.FIRST_COMPLETED
            )
            for task in [*waits, stopper]:
                task.cancel()
            if stop.is_set():
                break
            exited = [waits[t] for t in done if t in waits]
            if any(c is not pbxws for c in exited):
                for child in exited:
                    code = child.proc.returncode if child.proc else None
                    print(
                        f"{child.name} exited ({code}); see {child.log_path}",
                        file=sys.stderr,
                    )
                return 1
            code = pbxws.proc.returncode if pbxws.proc else None
            print(f"pbxws (pid {pbxws.pid}) exited ({code}); starting it again…")
            await pbxws.stop()
            await asyncio.sleep(1)
            await pbxws.start()
            await pbxws.wait_for("server_started")
            print(f"pbxws is back on port {ws_port}, pid {pbxws.pid}", flush=True)
        return 0
    finally:
        for child in reversed(children):
            await child.stop()
        print(f"stopped; logs in {logs}/")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="where all three listen")
    parser.add_argument("--ws-port", type=int, default=6001, help="pbxws (0: any)")
    parser.add_argument("--metrics-port", type=int, default=0, help="pbxws metrics")
    parser.add_argument("--http-port", type=int, default=8000, help="the dashboard")
    parser.add_argument(
        "--no-simulator", action="store_true", help="no calls unless you post them"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args)))


if __name__ == "__main__":
    cli()
