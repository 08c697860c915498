"""The benchmark's scenarios run correctly (tiny sizes, pbxws only; no timings judged)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ROOT, timeout


@pytest.mark.parametrize(
    ("generator", "scenarios"),
    [
        ("c", ("idle", "fanout", "pbx", "churn", "cluster")),
        ("python", ("fanout", "pbx")),
    ],
)
async def test_bench_smoke_runs_every_scenario(
    generator: str, scenarios: tuple[str, ...]
) -> None:
    """`bench/run --smoke` runs idle, fan-out, PBX, churn and cluster and delivers everything.

    Both load generators: the compiled per-event loops (default) and the
    all-Python one. Results go to the git-ignored bench/results/; the bench exits
    non-zero when a scenario fails to run or its lowest rate does not deliver
    every event.
    """
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "bench" / "run"),
        "--smoke",
        "--generator",
        generator,
        "--only",
        ",".join(scenarios),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout(24))
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    for scenario in scenarios:
        assert f"| {scenario}" in text, f"scenario {scenario} missing:\n{text[-4000:]}"
