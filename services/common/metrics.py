"""Prometheus request metrics for the services and the /metrics handler."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from tornado import web

REQUESTS = Counter(
    "gemhub_service_requests_total",
    "HTTP requests handled by a GemHub service",
    ["service", "handler", "method", "code"],
)
LATENCY = Histogram(
    "gemhub_service_request_duration_seconds",
    "Time to handle an HTTP request in a GemHub service",
    ["service", "handler", "method"],
)


def record_request(service: str, handler: web.RequestHandler) -> None:
    """A tornado ``log_function`` body: count the request and observe its latency."""
    name = type(handler).__name__
    method = handler.request.method or ""
    REQUESTS.labels(service, name, method, str(handler.get_status())).inc()
    LATENCY.labels(service, name, method).observe(handler.request.request_time())


class MetricsHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest())
