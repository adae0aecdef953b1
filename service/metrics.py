"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_MS_BUCKETS = (1, 2.5, 5, 10, 20, 30, 50, 75, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "trimodal_request_duration_ms",
            "Request duration by route, method and status.",
            ("route", "method", "status"),
            buckets=_MS_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "trimodal_stage_duration_ms",
            "Search stage durations (decode, encode, search, rerank, segments).",
            ("stage",),
            buckets=_MS_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "trimodal_errors_total", "Error responses by code.", ("code",), registry=self.registry
        )
        self.items = Gauge(
            "trimodal_index_items", "Items in the live index version.", registry=self.registry
        )
        self.vectors = Gauge(
            "trimodal_index_vectors",
            "Vectors per modality in the live index version.",
            ("modality",),
            registry=self.registry,
        )
        self.reloads = Counter(
            "trimodal_index_reloads_total",
            "Index version swaps (result: swapped, failed).",
            ("result",),
            registry=self.registry,
        )
        self.stale = Gauge(
            "trimodal_index_stale",
            "1 while the served index version is not the published one (see /readyz for why).",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "trimodal_searches_in_flight", "Searches running now.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
