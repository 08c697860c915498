"""Allowed origins: which browser origins an app's ``allowed_origins`` lets in."""

from __future__ import annotations

import pytest

from pbxws.protocol.origins import origin_allowed, origin_pattern_problem

RULES = ["https://app.example.com", "*.corp.io", "localhost:3000", "http://[::1]:8080"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("HTTPS://APP.EXAMPLE.COM", True),
        ("https://app.example.com:443", True),
        ("https://app.example.com:8443", False),
        ("http://app.example.com", False),
        ("https://evil.example.com", False),
        ("https://app.example.com.evil.io", False),
        ("https://x.corp.io", True),
        ("http://a.b.corp.io:9000", True),
        ("https://corp.io", False),
        ("https://xcorp.io", False),
        ("http://localhost:3000", True),
        ("https://localhost:3000", True),
        ("http://localhost", False),
        ("http://[::1]:8080", True),
        ("http://[::1]:8081", False),
        ("null", False),
        ("", False),
        ("garbage", False),
        ("https://*.corp.io", False),
        ("https://user@app.example.com", False),
        ("https://app.example.com/path", False),
    ],
)
def test_origin_against_rules(origin: str, allowed: bool) -> None:
    """Exact origins, bare hosts and subdomain wildcards match as documented."""
    assert origin_allowed(origin, RULES) is allowed


def test_no_origin_header_is_not_a_browser_and_is_allowed() -> None:
    """A client without Origin (server, mobile app) is always allowed."""
    assert origin_allowed(None, RULES)


def test_empty_list_allows_every_origin() -> None:
    """No allowed_origins means any origin."""
    assert origin_allowed("https://anything.example", [])
    assert origin_allowed("null", [])


def test_star_allows_every_origin() -> None:
    """'*' allows anything, even a malformed origin."""
    assert origin_allowed("https://anything.example", ["https://a.b", "*"])
    assert origin_allowed("null", ["*"])


@pytest.mark.parametrize(
    "entry",
    ["*", "https://a.example", "a.example", "*.example.com", "https://*.example.com",
     "localhost:3000", "http://[::1]:8080", "https://a.example/", "capacitor://localhost"],
)  # fmt: skip
def test_good_patterns(entry: str) -> None:
    """Usable entries have no problem."""
    assert origin_pattern_problem(entry) is None


@pytest.mark.parametrize(
    "entry",
    ["", "https://", "https://a.example/path", "a.example:99999", "x.*.example.com",
     "**.example.com", "https://a b", "a.example:", "ftp//x", "*.", "a*.example"],
)  # fmt: skip
def test_bad_patterns(entry: str) -> None:
    """Malformed entries are described, quoting the entry."""
    problem = origin_pattern_problem(entry)
    assert problem is not None
    assert repr(entry) in problem
