"""Fixtures for the interop tests: a real ``pbxws serve`` and the official Pusher SDKs.

The server runs the default app with a **numeric** id, because the Python ``pusher``
SDK refuses any other (``pusher.util.app_id_re``), and client messages enabled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pusher
import pytest

INTEROP_APP_ID = "424242"


@pytest.fixture
def app(app: Any) -> Any:
    """The interop server's app: Soketi's default key and secret with a numeric id."""
    return dataclasses.replace(app, id=INTEROP_APP_ID)


@pytest.fixture
async def server(pbxws_process: Callable[..., Any], app: Any) -> Any:
    """A ``pbxws serve`` subprocess serving ``app``, with client events enabled."""
    return await pbxws_process(
        env={
            **app.as_env(),
            "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        }
    )


@pytest.fixture
def driver(server: Any, node_driver: Any, app: Any) -> Any:
    """The Node driver, signing with the interop app's credentials by default."""
    node_driver.app = app
    return node_driver


@pytest.fixture
def python_sdk(server: Any, app: Any) -> Callable[..., pusher.Pusher]:
    """Factory: a Python ``pusher.Pusher`` for ``server`` (kwargs override creds)."""

    def make(**overrides: Any) -> pusher.Pusher:
        kwargs: dict[str, Any] = {
            "app_id": app.id,
            "key": app.key,
            "secret": app.secret,
            "ssl": False,
            "host": "127.0.0.1",
            "port": server.port,
            "encryption_master_key_base64": app.master_key,
            "timeout": 10,
        }
        kwargs.update(overrides)
        return pusher.Pusher(**kwargs)

    return make
