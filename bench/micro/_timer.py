"""The one timing helper of bench/micro: best of 5 ``timeit`` runs, in ns/op.

Scripts here are plain: ``.venv/bin/python bench/micro/<name>.py`` prints one
line per case, ``name  ns/op``. Best-of-N (not the mean) is the figure least
disturbed by other processes, as h11's and websockets' micro-benchmarks do.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable


def bench(
    name: str, fn: Callable[[], object], *, repeat: int = 5, per_call: int = 1
) -> float:
    """Time ``fn`` (which does ``per_call`` operations); print and return ns/op."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=repeat, number=number)) / number
    ns = best * 1e9 / per_call
    print(f"{name:<58} {ns:>10.1f} ns/op")
    return ns
