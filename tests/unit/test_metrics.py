"""The metrics' plain-number counters and their text exposition (no event loop)."""

from __future__ import annotations

import time

from pbxws.config import MetricsConfig
from pbxws.metrics import NULL_STATS, PUBLISH_BUCKETS, AppStats, Buckets, Metrics


def test_buckets_count_a_value_equal_to_a_bound_in_that_bucket() -> None:
    """``le`` semantics: 0.5 falls in the 0.5 bucket, 0.6 in the next, 9 in +Inf."""
    buckets = Buckets((0.1, 0.5, 1.0))
    for value in (0.05, 0.5, 0.6, 9.0):
        buckets.observe(value)
    assert buckets.counts == [1, 1, 1, 1]
    assert buckets.total == 0.05 + 0.5 + 0.6 + 9.0


def test_a_fan_out_adds_n_messages_and_n_frames_of_bytes() -> None:
    """``delivered(n, size)`` is the same as n calls of ``sent(size)``."""
    one_call, many_calls = AppStats(), AppStats()
    one_call.delivered(5, 40)
    for _ in range(5):
        many_calls.sent(40)
    assert (one_call.messages_sent, one_call.bytes_sent) == (5, 200)
    assert (many_calls.messages_sent, many_calls.bytes_sent) == (5, 200)


def test_published_observes_one_latency() -> None:
    """``published`` counts the fan-out and adds one latency observation."""
    stats = AppStats()
    stats.published(3, 10, time.perf_counter())
    assert stats.messages_sent == 3
    assert sum(stats.latency.counts) == 1
    assert len(stats.latency.counts) == len(PUBLISH_BUCKETS) + 1


def test_null_stats_ignore_everything() -> None:
    """The disabled stats keep every counter at zero whatever they are told."""
    NULL_STATS.connected()
    NULL_STATS.received(10)
    NULL_STATS.published(3, 10, 0.0)
    NULL_STATS.rejected("http", 401)
    NULL_STATS.limited("client_events")
    assert NULL_STATS.connections == NULL_STATS.bytes_received == 0
    assert NULL_STATS.rejections == {}
    assert NULL_STATS.rate_limited == {}
    assert sum(NULL_STATS.latency.counts) == 0


def test_disabled_metrics_hand_out_null_stats_and_export_nothing() -> None:
    """``enabled = false``: every app gets NULL_STATS and the registry is empty."""
    metrics = Metrics(MetricsConfig(enabled=False), ["a"])
    assert metrics.app("a") is NULL_STATS
    assert metrics.app("unknown") is NULL_STATS
    assert metrics.render_text() == b""


def test_text_keeps_soketi_counter_names_and_suffixes_process_counters() -> None:
    """Counters without ``_total`` keep their name; prometheus-client's get it added."""
    metrics = Metrics(MetricsConfig(), ["a"])
    metrics.app("a").received(7)
    text = metrics.render_text().decode()
    assert "# TYPE soketi_socket_received_bytes counter\n" in text
    assert 'soketi_socket_received_bytes{app_id="a",port=""} 7.0\n' in text
    assert "# TYPE soketi_process_cpu_seconds_total counter\n" in text
    assert "_total_total" not in text


def test_unknown_app_ids_share_one_empty_label() -> None:
    """Refusals naming an unknown app are exported under app_id=""."""
    metrics = Metrics(MetricsConfig(), ["a"])
    metrics.app("x").rejected("connection", 4001)
    metrics.app("y").rejected("connection", 4001)
    text = metrics.render_text().decode()
    assert (
        'soketi_rejections_total{app_id="",port="",kind="connection",code="4001"} 2.0'
        in text
    )
    assert 'app_id="x"' not in text


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in label values are escaped."""
    metrics = Metrics(MetricsConfig(), ['q"\\\n'])
    text = metrics.render_text().decode()
    assert 'app_id="q\\"\\\\\\n"' in text
