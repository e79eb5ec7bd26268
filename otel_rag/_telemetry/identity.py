"""Who emits the telemetry: the distro's name and version, and the semantic-conventions schema our HTTP spans and
metrics follow (the stable HTTP conventions, as the stock instrumentations declare them)."""

from __future__ import annotations

from opentelemetry.semconv.schemas import Schemas

__all__ = ["DISTRO_NAME", "HTTP_SCHEMA_URL", "VERSION"]

DISTRO_NAME = "otel-rag"
VERSION = "0.1.0"  # the package's version (pyproject.toml); tests/test_public_api.py checks they agree
HTTP_SCHEMA_URL = Schemas.V1_21_0.value
