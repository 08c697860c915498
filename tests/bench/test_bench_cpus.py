"""``bench/run --server-cpus/--gen-cpus/--pbxws-env``: who runs where, how, refusals."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, timeout

sys.path.insert(0, str(ROOT / "bench" / "load"))
import servers

import bench


def test_cpu_lists_read_like_taskset() -> None:
    assert bench._cpu_list("0") == {0}
    assert bench._cpu_list("0-2") == {0, 1, 2}
    assert bench._cpu_list("0,2-3") == {0, 2, 3}
    with pytest.raises(ValueError):
        bench._cpu_list("one")


def test_the_printout_says_where_and_how_the_servers_ran() -> None:
    assert bench.setup_notes({"server_cpus": "0", "gen_cpus": "1"}) == (
        "; servers on CPU 0, generator on CPU 1"
    )
    assert bench.setup_notes({"gen_cpus": "1"}) == "; generator on CPU 1"
    assert bench.setup_notes({"server_cpus": None, "gen_cpus": None}) == ""
    assert bench.setup_notes({"pbxws_env": {"PBXWS_SERVER_X": "0"}}) == (
        "; pbxws with PBXWS_SERVER_X=0"
    )


async def test_pbxws_env_reaches_the_pbxws_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting is applied: an invalid value stops pbxws naming the key."""
    key = "PBXWS_SERVER_PUBLISH_COALESCING_WINDOW"
    monkeypatch.setattr(servers, "PBXWS_ENV", {key: "5"})
    with pytest.raises(servers.StartError, match=r"server\.publish_coalescing_window"):
        await servers.start_pbxws(tmp_path / "pbxws.log")


def test_pinned_runs_the_command_under_taskset_only_when_asked() -> None:
    argv = ["node", "server.js", "start"]
    assert servers.pinned(argv, None) == argv
    assert servers.pinned(argv, "1") == ["taskset", "-c", "1", *argv]


async def test_a_pinned_child_and_all_its_threads_stay_on_the_cpu() -> None:
    """The mask is set before exec, so threads started later inherit it."""
    cpu = str(min(os.sched_getaffinity(0)))
    code = (
        "import os, threading\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))\n"
        "t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), sorted(seen[0]))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *servers.pinned([sys.executable, "-c", code], cpu),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout())
    assert proc.returncode == 0
    assert out.decode().split() == [f"[{cpu}]", f"[{cpu}]"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--server-cpus", "4096", "--server-cpus 4096: this machine has CPUs"),
        ("--gen-cpus", "x", "--gen-cpus x: expected CPU numbers"),
        ("--pbxws-env", "WINDOW=0", "--pbxws-env WINDOW=0: expected PBXWS_NAME"),
    ],
)
async def test_bench_run_refuses_settings_it_cannot_use(
    flag: str, value: str, message: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "bench" / "run"),
        "--smoke",
        flag,
        value,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout(3))
    assert proc.returncode == 2, out.decode()
    assert message in out.decode()
