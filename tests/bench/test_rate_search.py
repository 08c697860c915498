"""The bench's max-rate search: the ladder, the bisection and the lower-bound note.

The measurement of one rate step (``rate_step``: a server, the generator and
the clock) is replaced by a rule "passes below a threshold", so the search's
own arithmetic is what is checked here; ``test_bench_smoke.py`` runs the real
steps.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench" / "load"))
import bench

LADDER = [8000, 10000, 12000, 16000, 20000, 24000, 28000]


class _Server:
    name = "pbxws"

    def alive(self) -> bool:
        return True


def _passing_below(limit: float, tried: list[float]) -> Any:
    async def step(
        server: object,
        gen: object,
        channels: list[str],
        subs: int,
        rate: float,
        cfg: dict[str, Any],
    ) -> dict[str, Any]:
        tried.append(rate)
        return {
            "rate": rate,
            "pass": rate < limit,
            "other_cpu_util": 0.0,
            "delivered": 1,
            "scheduled": 1,
            "p50": 0.1,
            "p99": 0.2,
            "max": 0.3,
            "server_cpu_util": 0.5,
            "server_cpu_s_per_100k": 1.0,
            "gen_cpu_s_per_100k": 1.0,
            "publisher_cpu_s": 0.1,
            "window_s": 4.0,
        }

    return step


async def _search(
    monkeypatch: pytest.MonkeyPatch, limit: float, refine: int
) -> tuple[dict[str, Any], list[float]]:
    tried: list[float] = []
    monkeypatch.setattr(bench, "rate_step", _passing_below(limit, tried))
    cfg = {**bench.FULL, "refine": refine}
    res = await bench.rate_search(
        _Server(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        ["presence-pbx-0"],
        4,
        LADDER,
        cfg,
        "pbx",
    )
    return res, tried


async def test_three_bisection_steps_between_the_last_pass_and_the_first_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res, tried = await _search(monkeypatch, limit=18700, refine=3)
    # 16,000 passed, 20,000 failed; then geometric midpoints, rounded to tens.
    assert tried == [8000, 10000, 12000, 16000, 20000, 17890, 18920, 18400]
    assert res["max_rate"] == 18400
    assert res["first_fail"] == 18920
    assert res["capped"] is False


async def test_one_bisection_step_lands_on_the_ladder_midpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res, tried = await _search(monkeypatch, limit=18700, refine=1)
    assert tried[-1] == 17890
    assert res["max_rate"] == 17890


async def test_a_round_that_passes_the_whole_ladder_is_a_lower_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res, tried = await _search(monkeypatch, limit=1e9, refine=3)
    assert tried == LADDER  # nothing to bisect
    assert res["max_rate"] == 28000
    assert res["capped"] is True
    other = {"max_rate": 20000, "first_fail": 24000, "capped": False}
    data = {"scenarios": {"pbx": {"pbxws": [res, other]}}}
    (note,) = bench.capped_notes(data)
    assert "pbx pbxws: 1 of 2 round(s)" in note
    assert "28,000/s" in note
    assert "lower bound" in note


def test_no_note_when_every_round_failed_somewhere() -> None:
    runs = [{"max_rate": 17400, "first_fail": 17890, "capped": False}]
    failed = [{"round": 2, "error": "RuntimeError: pbxws exited"}]
    data = {"scenarios": {"pbx": {"pbxws": runs, "soketi": failed}}}
    assert bench.capped_notes(data) == []
