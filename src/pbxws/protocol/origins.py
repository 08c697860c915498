"""Which browser origins may connect to an app (``allowed_origins``).

Browsers send an ``Origin`` header with every WebSocket handshake; an app can
list the origins its pages are served from, and a browser connection from any
other origin is refused with 4009, as Reverb and Sockudo do. Clients that are
not browsers (servers, mobile apps, CLIs) send no ``Origin`` and are always
allowed: the header is a browser guarantee, not an authentication.

Entries of ``allowed_origins`` (an empty list allows every origin):

* ``*``: any origin;
* ``https://app.example.com``, ``http://localhost:8080``: exactly that origin,
  scheme, host and port (no port means the scheme's default one);
* ``app.example.com``, ``localhost:8080``: that host (and port, if given)
  over any scheme;
* ``*.example.com``, ``https://*.example.com``: any subdomain of
  ``example.com`` at any depth, not ``example.com`` itself (list both to
  allow both).

Hosts compare case-insensitively; a trailing ``/`` on an entry is ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final, NamedTuple

__all__ = ["origin_allowed", "origin_pattern_problem"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCHEME_RE: Final = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST_RE: Final = re.compile(r"[a-z0-9*_.~%-]+")
_IPV6_RE: Final = re.compile(r"[0-9a-f:.]+")
_PORT_RE: Final = re.compile(r":[0-9]{1,5}")
_PORT_END: Final = 65536


class _Origin(NamedTuple):
    scheme: str | None
    host: str
    port: int | None


def _split(text: str) -> _Origin | None:
    """``scheme://host:port`` (scheme, port optional) in parts; None if malformed."""
    text = text.strip().lower()
    scheme: str | None = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        if not _SCHEME_RE.fullmatch(scheme):
            return None
    text = text.removesuffix("/")
    if text.startswith("["):  # an IPv6 literal: [::1]:8080
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not _IPV6_RE.fullmatch(host):
            return None
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
        if not _HOST_RE.fullmatch(host):
            return None
    port: int | None = None
    if rest:
        if not _PORT_RE.fullmatch(rest) or not 0 < int(rest[1:]) < _PORT_END:
            return None
        port = int(rest[1:])
    return _Origin(scheme, host, port)


@functools.lru_cache(maxsize=1024)
def _rule(entry: str) -> _Origin | None:
    rule = _split(entry)
    if rule is None:
        return None
    wildcard = rule.host.startswith("*.") and len(rule.host) > len("*.")
    if "*" in (rule.host[2:] if wildcard else rule.host):
        return None
    if rule.scheme is not None and rule.port is None:
        rule = rule._replace(port=_DEFAULT_PORTS.get(rule.scheme))
    return rule


def origin_pattern_problem(entry: str) -> str | None:
    """What is wrong with an ``allowed_origins`` entry, or None if it is usable."""
    if entry.strip() == "*":
        return None
    if _rule(entry) is None:
        return (
            "must be '*', an origin like 'https://app.example.com', a host like "
            f"'app.example.com' or a wildcard like '*.example.com', got {entry!r}"
        )
    return None


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Whether a connection with this ``Origin`` header may use the app.

    ``origin`` None (no header: not a browser) and an empty ``allowed`` list
    allow everything. A malformed origin (including the ``null`` origin of
    sandboxed pages) is allowed only by ``*``.
    """
    rules = list(allowed)
    if origin is None or not rules:
        return True
    if any(entry.strip() == "*" for entry in rules):
        return True
    parsed = _split(origin)
    if parsed is None or parsed.scheme is None or "*" in parsed.host:
        return False
    port = parsed.port
    if port is None:
        port = _DEFAULT_PORTS.get(parsed.scheme)
    for entry in rules:
        rule = _rule(entry)
        if rule is None or not _host_matches(rule.host, parsed.host):
            continue
        if rule.scheme is None:
            if rule.port is None or rule.port == port:
                return True
        elif rule.scheme == parsed.scheme and rule.port == port:
            return True
    return False
