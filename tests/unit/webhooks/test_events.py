"""Webhook events, bodies, signatures and endpoint rules: pure, no event loop."""

from __future__ import annotations

import json
import time

import msgspec
import pusher

from pbxws.config import AppConfig, WebhookConfig, WebhookFilter
from pbxws.webhooks import events as ev


def test_signature_matches_the_reference_vector() -> None:
    """The test vector of pusher-protocol.md §15."""
    body = (
        b'{"time_ms":1327078148132,"events":'
        b'[{"name":"channel_occupied","channel":"test"}]}'
    )
    assert (
        ev.signature("7ad3773142a6692b25b8", body)
        == "abfea5004a8dd261c09cf7357e59a6dbdbfd3d6a9846970f7d549e8e2b57bb32"
    )


def test_the_python_sdk_accepts_a_body_with_our_event_ids() -> None:
    """validate_webhook accepts our bytes and hands back the events with their ids."""
    events = [
        ev.transition("member_added", "presence-x", "u1", "n-1"),
        ev.client_event(
            "private-c", "client-a", msgspec.Raw(b'{"k":1}'), "1.2", None, "n-2"
        ),
    ]
    # The SDK refuses a time_ms more than 5 minutes from its clock.
    body = ev.body(int(time.time() * 1000), events)
    headers = ev.request_headers("key", "secret", body, {})
    sdk = pusher.Pusher(app_id="1", key="key", secret="secret")
    data = sdk.validate_webhook(
        key=headers["X-Pusher-Key"],
        signature=headers["X-Pusher-Signature"],
        body=body.decode(),
    )
    assert data is not None
    assert data["events"] == [
        {"name": "member_added", "channel": "presence-x", "user_id": "u1", "id": "n-1"},
        {
            "name": "client_event",
            "channel": "private-c",
            "event": "client-a",
            "data": {"k": 1},
            "socket_id": "1.2",
            "id": "n-2",
        },
    ]
    assert (
        sdk.validate_webhook(
            key="key", signature=headers["X-Pusher-Signature"], body=body.decode() + " "
        )
        is None
    )


def test_event_shapes() -> None:
    """Each event has Pusher's fields (and our id), nothing else."""
    assert json.loads(ev.transition("channel_vacated", "c", "", "i")) == {
        "name": "channel_vacated",
        "channel": "c",
        "id": "i",
    }
    assert json.loads(ev.cache_miss("cache-c", "i")) == {
        "name": "cache_miss",
        "channel": "cache-c",
        "id": "i",
    }
    assert json.loads(ev.subscription_count("c", 3, "i")) == {
        "name": "subscription_count",
        "channel": "c",
        "subscription_count": 3,
        "id": "i",
    }
    presence = ev.client_event(
        "presence-p", "client-x", msgspec.Raw(b""), "1.2", "u", "i"
    )
    assert json.loads(presence) == {
        "name": "client_event",
        "channel": "presence-p",
        "event": "client-x",
        "data": None,
        "socket_id": "1.2",
        "user_id": "u",
        "id": "i",
    }


def test_custom_headers_cannot_replace_ours() -> None:
    """X-Pusher-Key and X-Pusher-Signature are ours whatever the case of the custom ones."""
    headers = ev.request_headers(
        "key",
        "s",
        b"{}",
        {"x-pusher-KEY": "forged", "X-Pusher-Signature": "x", "A": "b"},
    )
    assert headers == {
        "A": "b",
        "Content-Type": "application/json",
        "X-Pusher-Key": "key",
        "X-Pusher-Signature": ev.signature("s", b"{}"),
    }


def test_filters_are_anded_and_urls_merged() -> None:
    """Both filters must hold; two webhooks of one URL get the union of their events."""
    app = AppConfig(
        id="1",
        key="k",
        secret="s",
        webhooks=[
            WebhookConfig(
                url="https://a/x",
                event_types=["channel_occupied"],
                filter=WebhookFilter(
                    channel_name_starts_with="presence-", channel_name_ends_with="-room"
                ),
                headers={"H": "1"},
            ),
            WebhookConfig(url="https://b/y", event_types=["client_event"]),
            WebhookConfig(
                url="https://a/x", event_types=["client_event"], headers={"H": "2"}
            ),
        ],
    )
    endpoints = ev.app_endpoints(app)
    assert list(endpoints) == ["https://a/x", "https://b/y"]
    a = endpoints["https://a/x"]
    assert a.headers == {"H": "1"}
    assert a.wants("channel_occupied", "presence-1-room")
    assert not a.wants("channel_occupied", "presence-1")
    assert not a.wants("channel_occupied", "private-1-room")
    assert a.wants("client_event", "anything")
    assert ev.targets(endpoints.values(), "client_event", "c") == (
        "https://a/x",
        "https://b/y",
    )
    assert ev.targets(endpoints.values(), "channel_vacated", "c") == ()


def test_event_ids_are_unique_per_node() -> None:
    """Ids carry the node prefix and a counter."""
    ids = ev.EventIds("123")
    assert [ids.next(), ids.next()] == ["123-1", "123-2"]
