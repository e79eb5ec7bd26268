"""The configuration catalogue: defaults, validation messages that name the variable, masking."""

from __future__ import annotations

import pytest

from otel_rag.config import CATALOGUE, POSTGRES_DSN, ConfigError, load_settings, masked


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.log_format == "json"
    assert settings.log_level == "info"
    assert settings.user_id_header == "x-user-id"
    assert settings.traces_exporter == ("otlp",)
    assert settings.logs_exporter == ("none",)
    assert settings.otlp_protocol == "http/protobuf"
    assert settings.service_name == "unknown_service"
    assert settings.postgres_dsn is None


def test_service_name_from_resource_attributes() -> None:
    settings = load_settings({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name=rag-api"})
    assert settings.service_name == "rag-api"
    assert load_settings({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "service.name=y"}).service_name == "x"


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("OTEL_RAG_LOG_FORMAT", "xml", "json, console"),
        ("OTEL_RAG_LOG_LEVEL", "loud", "debug, info, warning, error, critical"),
        ("OTEL_RAG_LOG_STDLIB", "maybe", "true, false"),
        ("OTEL_RAG_USER_ID_HEADER", "X User", "an HTTP header name"),
        ("OTEL_RAG_REDACT_PATTERNS", "([unclosed", "regular expressions separated by ;;"),
        ("OTEL_RAG_POSTGRES_DSN", "mysql-ish", "a postgresql:// URL or a key=value connection string"),
        ("OTEL_SDK_DISABLED", "nope", "true, false"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "always_on, always_off, traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", "a number from 0 to 1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "http/protobuf, grpc, http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "an http:// or https:// URL"),
    ],
)
def test_bad_values_name_the_variable_and_accepted_values(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({variable: value})
    assert error.value.variable == variable
    assert str(error.value).startswith(f"{variable}={value!r} is not valid; accepted: ")
    assert accepted in str(error.value)


def test_values_are_trimmed_and_case_insensitive() -> None:
    settings = load_settings({"OTEL_RAG_LOG_FORMAT": " Console ", "OTEL_RAG_LOG_STDLIB": "OFF"})
    assert settings.log_format == "console"
    assert settings.log_stdlib is False


def test_every_setting_is_documented() -> None:
    names = [setting.env for setting in CATALOGUE]
    assert len(names) == len(set(names))
    for setting in CATALOGUE:
        assert setting.help.strip() and setting.accepted.strip(), setting.env
        assert setting.env.startswith(("OTEL_RAG_", "OTEL_", "LANGSMITH_"))
        assert setting.standard != setting.env.startswith("OTEL_RAG_")


def test_masking_hides_passwords_but_keeps_the_rest() -> None:
    assert masked(POSTGRES_DSN, "postgresql://rag:s3cret@db:5432/obs") == "postgresql://rag:****@db:5432/obs"
    assert masked(POSTGRES_DSN, "host=db user=rag password=s3cret") == "host=db user=rag password=****"
    key = next(s for s in CATALOGUE if s.env == "LANGSMITH_API_KEY")
    assert masked(key, "lsv2_pt_0123456789abcdef") == "****cdef"
    assert masked(key, "short") == "****"
