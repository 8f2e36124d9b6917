"""OpenTelemetry: providers from the standard OTEL_* variables, NATS header propagation, and the
identity attributes every span of ours carries (DESIGN section 8).

Spans never carry tokens, proofs, nonces or keys: only identifiers and decisions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

_lock = threading.Lock()
_configured = False

tracer = trace.get_tracer("agentid")
meter = metrics.get_meter("agentid")


def configure(service_name: str = "agentid") -> None:
    """Install tracer and meter providers once per process.

    With `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal variants) set, spans and metrics are
    exported over OTLP/HTTP; otherwise they are not recorded, but still carry trace ids that propagate.
    `OTEL_SDK_DISABLED=true` leaves the no-op providers in place.
    """
    global _configured
    with _lock:
        if _configured or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return
        _configured = True
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
        exporting = _otlp_enabled("TRACES")
        # With nowhere to send spans, do not record them (a twentieth of a token grant's CPU); the
        # SDK still gives every span a trace id and propagates it, so audit entries keep theirs.
        provider = TracerProvider(resource=resource, sampler=None if exporting else ALWAYS_OFF)
        readers = []
        if exporting:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if _otlp_enabled("METRICS"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def _otlp_enabled(signal: str) -> bool:
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


class _HeaderGetter(Getter[Mapping[str, str]]):
    """NATS headers are case-sensitive on the wire; trace headers are matched case-insensitively."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        for name, value in carrier.items():
            if name.lower() == key:
                return [value]
        return None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_getter = _HeaderGetter()


def inject(headers: MutableMapping[str, str]) -> None:
    propagate.inject(headers)


def extract(headers: Mapping[str, str] | None) -> Context:
    return propagate.extract(headers or {}, getter=_getter)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def identity_attributes(
    *,
    tenant: str | None = None,
    agent_id: str | None = None,
    spiffe_id: str | None = None,
    did: str | None = None,
    enduser: str | None = None,
    delegation_depth: int | None = None,
    decision: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The identity attributes of DESIGN section 8, leaving out what is unknown."""
    attrs = {
        "agentid.tenant": tenant,
        "agentid.agent_id": agent_id,
        "gen_ai.agent.id": spiffe_id or did or agent_id,
        "agentid.spiffe_id": spiffe_id,
        "agentid.did": did,
        "enduser.id": enduser,
        "agentid.delegation.depth": delegation_depth,
        "agentid.decision": decision,
        "agentid.decision.reason": reason,
    }
    return {k: v for k, v in attrs.items() if v is not None}


@contextmanager
def messaging_span(
    operation: str,
    template: str,
    subject: str,
    *,
    kind: SpanKind,
    msg_id: str | None = None,
    parent: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span named `{operation} {template}` with the messaging semantic conventions."""
    attrs: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.name": operation,
        "messaging.operation.type": _OPERATION_TYPES.get(operation, operation),
        "messaging.destination.name": subject,
        "messaging.destination.template": template,
    }
    if msg_id:
        attrs["messaging.message.id"] = msg_id
    attrs.update(attributes or {})
    with tracer.start_as_current_span(
        f"{operation} {template}", context=parent, kind=kind, attributes=attrs,
        record_exception=False, set_status_on_exception=False,
    ) as span:
        yield span


_OPERATION_TYPES = {"publish": "send", "request": "send", "process": "process", "reply": "send"}


def mark_error(span: Span, code: str) -> None:
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, code))
