"""The configuration catalogue: defaults, validation messages that name the variable, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_rag._config.settings import CATALOGUE, POSTGRES_DSN, ConfigError, load_settings, masked


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.log_format == "json"
    assert settings.log_level == "info"
    assert settings.user_id_header == "x-user-id"
    assert settings.traces_exporter == ("otlp",)
    assert settings.logs_exporter == ("otlp",)  # as the stock distro: logs go over OTLP too
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
        ("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-a,[bad", "'[bad' is not one"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "http/protobuf, grpc"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "the OpenTelemetry Python SDK has no http/json exporter"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "http/protobuf, grpc"),
        ("OTEL_PROPAGATORS", "tracecontxt", "baggage, none, tracecontext"),
        ("OTEL_PYTHON_EXCLUDED_URLS", "/health,(unclosed", "'(unclosed' is not one"),
        ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "*", "comma-separated regular expressions"),
        ("OTEL_RAG_SPOOL_MAX_BYTES", "0", "a size such as"),
        ("OTEL_RAG_PRICES_FILE", "/nonexistent/prices.json", "cannot read it: No such file or directory"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "an http:// or https:// URL"),
    ],
)
def test_bad_values_name_the_variable_and_accepted_values(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({variable: value})
    assert error.value.variable == variable
    assert str(error.value).startswith(f"{variable}={value!r} is not valid; accepted: ")
    assert accepted in str(error.value)


@pytest.mark.parametrize(
    ("value", "disabled", "warned"),
    [
        ("true", True, False),
        (" TRUE ", True, False),
        ("false", False, False),
        ("", False, False),
        ("1", False, True),
        ("yes", False, True),
        ("on", False, True),
    ],
)
def test_sdk_disabled_is_the_spec_boolean_only_true_is_true(value: str, disabled: bool, warned: bool) -> None:
    settings = load_settings({"OTEL_SDK_DISABLED": value, "OTEL_PYTHON_LOG_CORRELATION": value})
    assert settings.sdk_disabled is disabled and settings.log_correlation is disabled
    expected = [
        f"{name}={value.strip()!r} is neither true nor false: treated as false, as the spec says"
        for name in ("OTEL_SDK_DISABLED", "OTEL_PYTHON_LOG_CORRELATION")
    ]
    assert list(settings.warnings) == (expected if warned else [])


@pytest.mark.parametrize(
    ("sampler", "argument"),
    [
        ("traceidratio", "2"),
        ("parentbased_traceidratio", "half"),
        ("parentbased_jaeger_remote", "endpoint=x"),
        ("sometimes", None),
    ],
)
def test_samplers_are_left_to_the_sdk_which_warns_and_falls_back(sampler: str, argument: str | None) -> None:
    environ = {"OTEL_TRACES_SAMPLER": sampler} | ({"OTEL_TRACES_SAMPLER_ARG": argument} if argument else {})
    settings = load_settings(environ)  # no ConfigError: start-up goes on, as with the stock distro
    assert settings.raw["OTEL_TRACES_SAMPLER"] == sampler


def test_disabled_instrumentations_are_read_as_the_launcher_reads_them() -> None:
    settings = load_settings({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": " requests , fastapi"})
    assert settings.disabled_instrumentations == ("requests", "fastapi")
    assert settings.instrumentation_disabled("asgi", "fastapi") and not settings.instrumentation_disabled("logging")
    assert load_settings({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"}).instrumentation_disabled("logging")
    assert not load_settings({}).instrumentation_disabled("fastapi")


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


def test_the_dsn_is_parsed_now_and_no_message_shows_a_password() -> None:
    cases = {
        "OTEL_RAG_POSTGRES_DSN": "postgresq://rag:hunter2@db/obs",  # a typo in the scheme
        "OTEL_RAG_DEBUG_DSN": "host=db password=hunter2 nonsense",  # not key=value
        "LANGSMITH_ENDPOINT": "htps://me:hunter2@smith.example",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318?password=hunter2",
    }
    for variable, value in cases.items():
        with pytest.raises(ConfigError) as error:
            load_settings({variable: value})
        assert error.value.variable == variable
        assert "hunter2" not in str(error.value), str(error.value)
        assert "****" in str(error.value)
    assert load_settings({"OTEL_RAG_POSTGRES_DSN": "postgresql://rag:pw@db:5432/obs"}).postgres_dsn


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "the top level is not an object"),
        ('{"m": {"output": 1}}', "needs input"),
        ('{"m": {"input": "cheap"}}', "must be numbers"),
        ('{"m": {"input": -1}}', "must be numbers"),
        ('{"m": {"input": 1, "currency": "EUR"}}', "needs input"),
    ],
)
def test_a_bad_prices_file_stops_start_up(tmp_path: Path, content: str, why: str) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(content)
    with pytest.raises(ConfigError) as error:
        load_settings({"OTEL_RAG_PRICES_FILE": str(prices)})
    assert error.value.variable == "OTEL_RAG_PRICES_FILE" and why in str(error.value)
    prices.write_text('{"my-model": {"input": 1.5, "output": 2}}')
    assert load_settings({"OTEL_RAG_PRICES_FILE": str(prices)}).prices == {"my-model": (1.5, 2.0)}


def test_standard_variables_are_validated_the_way_the_sdk_reads_them() -> None:
    settings = load_settings({"OTEL_PROPAGATORS": "tracecontext", "OTEL_PYTHON_EXCLUDED_URLS": "/healthz,/debug/.*"})
    assert settings.propagators == ("tracecontext",)
    assert settings.excluded_urls is not None and settings.excluded_urls.search("/debug/api/traces")
    assert load_settings({"OTEL_PROPAGATORS": "none"}).propagators == ("none",)
    grpc_traces = load_settings(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf"}
    )
    assert grpc_traces.otlp_protocols == {"traces": "grpc", "metrics": "grpc", "logs": "http/protobuf"}
