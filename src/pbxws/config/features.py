"""Features the schema accepts but this version does not run yet."""

from __future__ import annotations

from .model import Config

__all__ = ["unsupported_features"]


def unsupported_features(config: Config) -> list[str]:
    """
    One problem per configured feature that is not implemented yet.

    The schema already has these features so that config files written today
    keep loading when they land; until then, starting a server with them must
    fail rather than silently run without them. Remove an entry when its
    feature lands.
    """
    problems: list[str] = []
    # Every feature of the schema runs in this version (webhooks: issue #6).
    return problems
