"""Fixtures for checking ``deploy/``: the tools that read its files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"

_HINT = (
    "is required by tests/deploy: run scripts/setup as root, or install it with "
    "`sudo apt-get install {package}` (Debian/Ubuntu)"
)


def _binary(name: str, package: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"{name} {_HINT.format(package=package)}", pytrace=False)
    return Path(found)


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Prometheus's checker (Debian package ``prometheus``)."""
    return _binary("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus() -> Path:
    """The Prometheus server (Debian package ``prometheus``)."""
    return _binary("prometheus", "prometheus")


@pytest.fixture(scope="session")
def nginx() -> Path:
    """nginx, for ``nginx -t`` (Debian package ``nginx``)."""
    return _binary("nginx", "nginx")
