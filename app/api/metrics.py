"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match
from starlette.types import Scope


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "evstore_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "evstore_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.appends = Counter(
            "evstore_appends",
            "Append requests by outcome (created, replayed, wrong_expected_version, "
            "duplicate_event_id)",
            ["outcome"],
            registry=self.registry,
        )
        self.conflicts = Counter(
            "evstore_append_conflicts",
            "Appends refused by a concurrency conflict, by reason: wrong_expected_version "
            "(412: the stream moved) or duplicate_event_id (409: ids used elsewhere)",
            ["reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "evstore_events_appended", "Events written by appends", registry=self.registry
        )
        self.batch_sizes = Histogram(
            "evstore_append_batch_requests",
            "Append requests committed together by the group-commit writer",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.live_subscribers = Gauge(
            "evstore_live_subscribers", "Connected live subscribers", registry=self.registry
        )
        self.subscriptions = Gauge(
            "evstore_subscriptions", "Durable subscriptions", registry=self.registry
        )
        self.subscription_lag = Gauge(
            "evstore_subscription_lag",
            "Positions between the head and the checkpoint of the durable subscriptions "
            "furthest behind (at most metrics_max_subscriptions series)",
            ["name"],
            registry=self.registry,
        )
        self.pool_checked_out = Gauge(
            "evstore_db_pool_checked_out",
            "Database connections of this process's pool in use (read at scrape time)",
            registry=self.registry,
        )
        self.live_waiters = Gauge(
            "evstore_live_waiters",
            "Live subscribers and long polls waiting for a new event (read at scrape time)",
            registry=self.registry,
        )
        self.head = Gauge(
            "evstore_head_position", "Highest committed global position", registry=self.registry
        )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in getattr(scope.get("app"), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"
