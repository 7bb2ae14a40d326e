"""OpenTelemetry traces, when asked for: ``pip install 'authsvc[otel]'`` and set
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``).

Each app gets its own tracer provider (never the global one), exporting over OTLP/HTTP in
batches: a span per request (named by route template) from the FastAPI instrumentation, and a
span per SQL statement from the SQLAlchemy one. Without the extra or the variable nothing is
imported and nothing changes; with the variable but not the extra, one warning says so.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy import Engine

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("authsvc")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


# Where the instrumentation writes the request's URL or query (old and new conventions).
_URL_ATTRIBUTES = ("http.target", "http.url", "url.full")
_QUERY_ATTRIBUTE = "url.query"


def _without_query(span: Any, scope: dict[str, Any]) -> None:
    """A query string may hold a token (the audit stream's ``?access_token=``) or credentials
    sent where they do not belong: the collector gets the path only."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    if attributes.get(_QUERY_ATTRIBUTE):
        span.set_attribute(_QUERY_ATTRIBUTE, "REDACTED")


class Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    @classmethod
    def from_environment(cls) -> Tracing | None:
        if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            logger.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but authsvc[otel] is not installed: "
                "no traces are exported"
            )
            return None
        service = os.environ.get("OTEL_SERVICE_NAME") or "authsvc"
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        # The exporter reads the endpoint, headers and timeout from the OTEL_* variables.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Health probes would be most of the spans and tell nothing.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            # Matched against scheme://host/path with re.search: anchored on the path alone,
            # or a Host header holding "metrics" would hide any request from tracing.
            excluded_urls=r"^[a-z]+://[^/]*/(healthz|readyz|metrics)$",
            server_request_hook=_without_query,
        )

    def instrument_engine(self, engine: Engine) -> None:
        """The instrumentation's engine tracer, on this engine alone and reporting to this
        app's provider. Not ``SQLAlchemyInstrumentor``: it is one per process, patches
        ``create_engine`` everywhere, and refuses SQLAlchemy 2.1 (its declared range ends
        below it; the event API it uses is the same, and the test exports SQL spans on 2.1).
        The listeners go with the engine, which the app disposes of at shutdown."""
        from opentelemetry.instrumentation.sqlalchemy import __name__ as scope_name
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeterProvider

        tracer = self.provider.get_tracer(scope_name)
        # It also counts pool connections as OpenTelemetry metrics; /metrics does that here.
        usage = NoOpMeterProvider().get_meter(scope_name).create_up_down_counter("unused")
        EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        """Export what is buffered."""
        self.provider.shutdown()
