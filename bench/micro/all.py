"""Run every micro-benchmark of bench/micro: ``.venv/bin/python bench/micro/all.py``."""

from __future__ import annotations

import decode
import encode
import fanout
import request
import sign

if __name__ == "__main__":
    for module in (decode, encode, sign, fanout, request):
        print(f"# {module.__name__}: {(module.__doc__ or '').splitlines()[0]}")
        module.main()
