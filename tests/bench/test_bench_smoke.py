"""The benchmark's scenarios run correctly (tiny sizes, pbxws only; no timings judged)."""

from __future__ import annotations

import asyncio

from tests.conftest import ROOT, timeout


async def test_bench_smoke_runs_every_scenario() -> None:
    """`bench/run --smoke` runs idle, fan-out, PBX, churn and cluster and delivers everything.

    Results go to the git-ignored bench/results/; the bench exits non-zero when
    a scenario fails to run or its lowest rate does not deliver every event.
    """
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "bench" / "run"),
        "--smoke",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout(24))
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    for scenario in ("idle", "fanout", "pbx", "churn", "cluster"):
        assert f"| {scenario}" in text, f"scenario {scenario} missing:\n{text[-4000:]}"
