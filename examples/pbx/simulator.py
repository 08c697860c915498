#!/usr/bin/env python3
"""The PBX stand-in: calls ring, get answered and end, as webhooks to backend.py.

A real PBX (or Twilio, Asterisk, ...) tells the Laravel app about its calls through
webhooks; the app stores each change in ``call_logs`` and broadcasts it
(``CallInitiated``, ``CallAnswered``, ``CallEnded``) through the ``pusher`` SDK. This
script is that PBX: for every organization in ``directory.json`` it keeps a few calls
going, each one ringing for a few seconds, then answered by one of the
organization's extensions (or missed), talking for a while, then hanging up.

Run: ``python examples/pbx/simulator.py --backend http://127.0.0.1:8000``
(``examples/pbx/run`` starts it for you). ``--calls N`` stops after N calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
RNG = random.SystemRandom()


def say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Pbx:
    def __init__(
        self,
        backend: str,
        session: aiohttp.ClientSession,
        *,
        speed: float,
        verbose: bool,
    ) -> None:
        self.backend = backend.rstrip("/")
        self.session = session
        self.speed = speed
        self.verbose = verbose

    async def webhook(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST one webhook; None if the app refused it or could not be reached."""
        try:
            async with self.session.post(
                f"{self.backend}/api/webhooks/pbx{path}", json=body
            ) as response:
                answer = await response.json(content_type=None)
                if response.status >= 300:
                    say(self.verbose, f"webhook {path}: {response.status} {answer}")
                    return None
                if not answer.get("broadcast", {}).get("ok", True):
                    say(self.verbose, f"broadcast failed: {answer['broadcast']}")
                return dict(answer)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            say(self.verbose, f"webhook {path}: {exc!r}")
            return None

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(RNG.uniform(low, high) / self.speed)

    async def call(self, org: dict[str, Any], extensions: list[str]) -> None:
        """One call, start to end."""
        caller = "+1555" + "".join(str(RNG.randrange(10)) for _ in range(7))
        did = RNG.choice(org["dids"])
        answer = await self.webhook(
            "/calls",
            {"organization_id": org["id"], "from_number": caller, "did_id": did["id"]},
        )
        if answer is None:
            return
        call_id = answer["call"]["call_id"]
        say(self.verbose, f"org {org['id']}: {caller} → {did['number']} ringing")
        await self.pause(2, 7)
        if RNG.random() < 0.15:
            await self.webhook(f"/calls/{call_id}/ended", {"status": "missed"})
            say(self.verbose, f"org {org['id']}: {caller} missed")
            return
        extension = RNG.choice(extensions)
        await self.webhook(f"/calls/{call_id}/answered", {"extension_id": extension})
        say(self.verbose, f"org {org['id']}: {caller} answered by {extension}")
        await self.pause(6, 45)
        await self.webhook(f"/calls/{call_id}/ended", {"status": "completed"})
        say(self.verbose, f"org {org['id']}: {caller} completed")


async def organization(
    pbx: Pbx,
    org: dict[str, Any],
    extensions: list[str],
    max_calls: int,
    budget: list[int],
) -> None:
    """Start calls for one organization, at most ``max_calls`` at a time."""
    running: set[asyncio.Task[None]] = set()
    try:
        while budget[0] != 0:
            if len(running) < max_calls:
                if budget[0] > 0:
                    budget[0] -= 1
                task = asyncio.create_task(pbx.call(org, extensions))
                running.add(task)
                task.add_done_callback(running.discard)
            await pbx.pause(3, 10)
        if running:
            await asyncio.wait(running)
    finally:
        for task in running:
            task.cancel()


async def run(args: argparse.Namespace) -> None:
    directory = json.loads((HERE / "directory.json").read_text())
    budget = [args.calls if args.calls else -1]  # -1: no end
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        pbx = Pbx(args.backend, session, speed=args.speed, verbose=args.verbose)
        tasks = [
            asyncio.create_task(
                organization(
                    pbx,
                    org,
                    [
                        u["extension_id"]
                        for u in directory["users"]
                        if u["organization_id"] == org["id"]
                    ],
                    args.max_calls,
                    budget,
                )
            )
            for org in directory["organizations"]
        ]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            await asyncio.wait(tasks)
        for task in [*tasks, stopper]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--max-calls", type=int, default=3, help="concurrent calls per organization"
    )
    parser.add_argument("--calls", type=int, default=0, help="stop after N (0: never)")
    parser.add_argument("--speed", type=float, default=1.0, help="2 = twice as fast")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
