"""Profile pbxws under a bench load with py-spy: where does the server's CPU go?

    .venv/bin/python bench/load/profile.py fanout --rate 100 --seconds 8
    .venv/bin/python bench/load/profile.py pbx --rate 4000 --seconds 8

Installs nothing: needs ``py-spy`` in .venv (``.venv/bin/pip install py-spy``).
Writes ``bench/results/profile-<scenario>-<rate>.txt`` (collapsed stacks, the
input of flamegraph tools) and prints the top functions by self time and by
inclusive time, as shares of the samples where the server was on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
from pathlib import Path

from servers import BENCH, ROOT, start_pbxws

from bench import Gen, presence_specs


def summarize(collapsed: Path, top: int) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        frames = stack.split(";")
        total += count
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    out = [f"{total} samples"]
    for title, counter in (("self", self_t), ("inclusive", incl)):
        out.append(f"\ntop {top} by {title} time:")
        for f, c in counter.most_common(top):
            out.append(f"  {100 * c / total:5.1f}%  {f}")
    return "\n".join(out)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["fanout", "pbx"])
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--native", action="store_true", help="include C frames (slower)")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--generator", choices=["c", "python"], default="c")
    a = p.parse_args()
    results = BENCH / "results"
    server = await start_pbxws(results / "logs" / f"profile-{a.scenario}.log")
    gen = await Gen.start(2, publisher=True, engine=a.generator)
    try:
        if a.scenario == "fanout":
            specs: list[tuple[str, str | None]] = [("fanout", None)] * 1000
            channels, subs = ["fanout"], 1000
        else:
            specs = presence_specs(2000, 4, "pbx")
            channels = sorted(
                {c for c, _ in specs}, key=lambda c: int(c.rsplit("-", 1)[1])
            )
            subs = 4
        await gen.connect(server, specs)
        out = results / f"profile-{a.scenario}-{a.rate:g}.txt"
        spy = subprocess.Popen(  # noqa: ASYNC220 - py-spy runs beside the loop
            [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(a.seconds)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                *(["--native"] if a.native else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(0.5)
        res = await gen.publish(
            host="127.0.0.1",
            port=server.port,
            channels=channels,
            rate=a.rate,
            duration=a.seconds - 1,
            conns=8,
        )
        spy.wait()
        st = await gen.stats()
        print(f"published {res['ok']}, delivered {st['received']}/{res['ok'] * subs}")
        print(summarize(out, a.top))
        print(f"\ncollapsed stacks: {out}")
    finally:
        await gen.stop()
        await server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    asyncio.run(main())
