"""The ingest gateway (HTTP -> log): `gateway_part(log)` mounts it on `build_app`."""

from __future__ import annotations

from deardiary.services.gateway.routes import IngestAck, IngestChecker, gateway_part
from deardiary.services.gateway.validation import IngestLimits, validate_envelope

__all__ = [
    "IngestAck",
    "IngestChecker",
    "IngestLimits",
    "gateway_part",
    "validate_envelope",
]
