"""The one exception the configuration layer raises."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """
    The configuration cannot be used: one line per problem in ``problems``.

    Every problem names where it comes from: a key path (``apps[1].key``,
    ``server.port``), an environment variable (``SOKETI_PORT``) or the file.
    ``str(exc)`` joins the problems one per line, ready to print.

    ``warnings`` carries what was found before the failure (ignored Soketi
    variables and the like) so that a CLI can still show them.
    """

    def __init__(self, problems: Iterable[str], warnings: Iterable[str] = ()) -> None:
        # Every problem found, in the order found; never empty.
        self.problems: list[str] = list(problems) or ["invalid configuration"]
        # Non-fatal findings collected on the way (see load_config_with_warnings).
        self.warnings: list[str] = list(warnings)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)
