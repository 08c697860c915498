"""The compiled hot loops of the generator (``fastgen.c``), loaded with ctypes.

``load()`` builds ``build/libfastgen-<digest>.so`` from ``fastgen.c`` the first
time (``cc``, and ``libcrypto.so.3``, which Python's own ``hashlib`` uses) and
returns the library with its argument types declared. ``bench/run`` makes sure
a C compiler is there; ``--generator python`` runs the all-Python generator.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "fastgen.c"
BUILD = HERE / "build"

# Histogram buckets read back per stats call (non-empty ones only).
STATS_CAP = 1 << 17


class PubResult(ctypes.Structure):
    _fields_ = [
        ("sent", ctypes.c_int64),
        ("ok", ctypes.c_int64),
        ("failed", ctypes.c_int64),
        ("connects", ctypes.c_int64),
        ("errors", ctypes.c_int64),
        ("slip_max_us", ctypes.c_int64),
        ("scheduled", ctypes.c_int64),
        ("elapsed", ctypes.c_double),
        ("statuses", ctypes.c_int64 * 600),
    ]


def build() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    lib = BUILD / f"libfastgen-{digest}.so"
    if lib.exists():
        return lib
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError(
            "no C compiler for the bench's generator (bench/load/fastgen.c): "
            "apt-get install gcc, or run the all-Python one with --generator python"
        )
    BUILD.mkdir(exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run(
        [
            cc,
            "-O2",
            "-Wall",
            "-shared",
            "-fPIC",
            "-pthread",
            str(SOURCE),
            "-o",
            str(tmp),
            "-l:libcrypto.so.3",
        ],
        check=True,
    )
    tmp.replace(lib)
    for old in BUILD.glob("libfastgen-*.so"):
        if old != lib:
            old.unlink(missing_ok=True)  # built from an older fastgen.c
    return lib


def load() -> Any:
    lib = ctypes.CDLL(str(build()))
    i64p = ctypes.POINTER(ctypes.c_int64)
    lib.pub_run.argtypes = [
        ctypes.c_char_p,  # host
        ctypes.c_int,  # port
        ctypes.c_char_p,  # app id
        ctypes.c_char_p,  # key
        ctypes.c_char_p,  # secret
        ctypes.POINTER(ctypes.c_char_p),  # channels
        ctypes.c_int,
        ctypes.c_double,  # rate
        ctypes.c_int64,  # total
        ctypes.c_char_p,  # padding
        ctypes.c_int,  # connections
        ctypes.c_int,  # a new connection per request (Connection: close)
        i64p,  # per-channel successes
        ctypes.POINTER(PubResult),
    ]
    lib.pub_run.restype = ctypes.c_int
    lib.sub_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.sub_create.restype = ctypes.c_void_p
    lib.sub_add.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.sub_add.restype = ctypes.c_int
    lib.sub_is_open.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.sub_is_open.restype = ctypes.c_int
    lib.sub_close.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.sub_close.restype = None
    lib.sub_stats.argtypes = [
        ctypes.c_void_p,
        i64p,
        ctypes.POINTER(ctypes.c_int32),
        ctypes.POINTER(ctypes.c_uint32),
        ctypes.c_int,
    ]
    lib.sub_stats.restype = ctypes.c_int
    lib.sub_reset.argtypes = [ctypes.c_void_p]
    lib.sub_reset.restype = None
    lib.sub_destroy.argtypes = [ctypes.c_void_p]
    lib.sub_destroy.restype = None
    return lib


class Readers:
    """The C reader thread of one subscriber worker and its slots."""

    def __init__(self, lib: Any, slots: int, bucket_us: int, ping_every: float):
        self.lib = lib
        self.handle = lib.sub_create(slots, bucket_us, int(ping_every * 1000))
        self._totals = (ctypes.c_int64 * 3)()
        self._keys = (ctypes.c_int32 * STATS_CAP)()
        self._counts = (ctypes.c_uint32 * STATS_CAP)()

    def add(self, slot: int, fd: int, pending: bytes) -> None:
        if self.lib.sub_add(self.handle, slot, fd, pending, len(pending)) != 0:
            os.close(fd)
            raise OSError(f"fastgen: could not take over slot {slot}")

    def is_open(self, slot: int) -> bool:
        return bool(self.lib.sub_is_open(self.handle, slot))

    def close(self, slot: int) -> None:
        self.lib.sub_close(self.handle, slot)

    def reset(self) -> None:
        self.lib.sub_reset(self.handle)

    def destroy(self) -> None:
        """Stop the thread and close its sockets (at most 0.2 s)."""
        self.lib.sub_destroy(self.handle)
        self.handle = None

    def stats(self) -> tuple[int, int, int, dict[int, int]]:
        """``(received, max_us, closed, histogram)`` since the last reset."""
        n = self.lib.sub_stats(
            self.handle, self._totals, self._keys, self._counts, STATS_CAP
        )
        hist = {self._keys[i]: self._counts[i] for i in range(n)}
        received, max_us, closed = self._totals
        return received, max_us, closed, hist


def publish(lib: Any, c: dict[str, Any], app_id: str, key: str, secret: str) -> dict:
    """Run one publish step in C (blocking; ctypes releases the GIL)."""
    channels: list[str] = c["channels"]
    rate = float(c["rate"])
    total = max(1, round(rate * float(c["duration"])))
    pad = int(c.get("padding", 0) or 0)
    padding = (" " + "x" * pad) if pad else ""
    arr = (ctypes.c_char_p * len(channels))(*(ch.encode() for ch in channels))
    per_channel = (ctypes.c_int64 * len(channels))()
    out = PubResult()
    lanes = max(1, int(c.get("conns", 4)))
    rc = lib.pub_run(
        c["host"].encode(),
        int(c["port"]),
        app_id.encode(),
        key.encode(),
        secret.encode(),
        arr,
        len(channels),
        rate,
        total,
        padding.encode(),
        lanes,
        int(bool(c.get("close_each"))),
        per_channel,
        ctypes.byref(out),
    )
    if rc != 0:
        raise OSError(f"fastgen: cannot publish to {c['host']}:{c['port']}")
    return {
        "sent": out.sent,
        "ok": out.ok,
        "failed": out.failed,
        "connects": out.connects,
        "errors": out.errors,
        "reconnects": max(0, out.connects - lanes),
        "scheduled": out.scheduled,
        "elapsed": out.elapsed,
        "achieved_rate": out.ok / out.elapsed if out.elapsed > 0 else 0.0,
        "statuses": {str(s): n for s, n in enumerate(out.statuses) if n},
        "per_channel_ok": {
            ch: per_channel[i] for i, ch in enumerate(channels) if per_channel[i]
        },
        "slip_max_ms": out.slip_max_us / 1000,
    }
