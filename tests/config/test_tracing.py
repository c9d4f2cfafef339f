"""Tracing is configured by the OpenTelemetry variables only: what turns it on, what `config`
shows (never a header's value), and bad values as one line and exit 2 before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import Backend, ConfigError
from launcher.config.resolve import resolve
from launcher.config.tracing import Tracing, check_installed
from launcher.testing.process import run_launcher

DEMO = Path(__file__).resolve().parents[2] / "demo"
SECRET = "s3cr3t-t0ken"


def tracing(**env: str) -> Tracing:
    return resolve({"APP_DIR": str(DEMO), **env}, Backend, affinity=2).tracing


@pytest.mark.parametrize(
    ("env", "enabled", "why"),
    [
        ({}, False, "off: neither"),
        ({"OTEL_SERVICE_NAME": "shop"}, False, "off: neither"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True, "on: OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_TRACES_EXPORTER": "console"}, True, "on: OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True, "on: OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            False,
            "off: OTEL_TRACES",
        ),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, False, "off: OTEL_SDK_DISABLED"),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True, "on:"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False, "off: neither"),  # empty is unset
    ],
)
def test_what_turns_tracing_on(env: dict[str, str], enabled: bool, why: str) -> None:
    resolved = tracing(**env)
    assert resolved.enabled is enabled
    assert resolved.why.startswith(why), resolved.why


def test_values_are_resolved_as_the_specification_says() -> None:
    resolved = tracing(
        OTEL_TRACES_EXPORTER="otlp,console",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_TRACES_SAMPLER="ParentBased_TraceIdRatio",
        OTEL_TRACES_SAMPLER_ARG="0.25",
        OTEL_PROPAGATORS="tracecontext",
        OTEL_RESOURCE_ATTRIBUTES="service.name=from-attributes,deployment.environment=prod%20eu",
    )
    assert resolved.exporters == ("otlp", "console")
    assert resolved.endpoint == "http://localhost:4317"  # grpc's default port
    assert (resolved.sampler, resolved.sampler_arg) == ("parentbased_traceidratio", 0.25)
    assert resolved.propagators == ("tracecontext",)
    assert resolved.service_name == "from-attributes"
    assert dict(resolved.resource_attributes)["deployment.environment"] == "prod eu"
    assert tracing(OTEL_SERVICE_NAME="shop", OTEL_RESOURCE_ATTRIBUTES="service.name=x").service_name == "shop"


def test_config_shows_the_tracing_settings_with_credentials_masked(tmp_path: Path) -> None:
    env = {
        "APP_DIR": str(DEMO),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://user:{SECRET}@collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{SECRET},x-tenant={SECRET}",
        "OTEL_SERVICE_NAME": "shop",
    }
    text = run_launcher(env, ("config",))
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines() if line.startswith("tracing.")}
    assert (
        "True" in lines["tracing.enabled"] and "env:OTEL_EXPORTER_OTLP_ENDPOINT" in lines["tracing.enabled"]
    )
    assert "authorization=***, x-tenant=***" in lines["tracing.headers"]
    assert "https://user:***@collector:4318" in lines["tracing.endpoint"]
    assert "shop  (env:OTEL_SERVICE_NAME)" in lines["tracing.service_name"]
    as_json = run_launcher(env, ("config", "--json"))
    shown = json.loads(as_json.stdout)["tracing"]
    assert shown["enabled"] is True and shown["headers"] == ["authorization=***", "x-tenant=***"]
    assert shown["sampler"] == "parentbased_always_on" and shown["propagators"] == ["tracecontext", "baggage"]
    for output in (text.stdout, text.stderr, as_json.stdout, as_json.stderr):
        assert SECRET not in output


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "OTEL_TRACES_EXPORTER",
            "zipkin",
            "otlp, console, both separated by a comma, or none (unknown: zipkin)",
        ),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote", "one of parentbased_always_on"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", "a number from 0 to 1"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "an http:// or https:// URL with a host"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:99999", "an http:// or https:// URL with a host"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http:///v1", "an http:// or https:// URL with a host"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf or grpc (http/json is not supported"),
        ("OTEL_PROPAGATORS", "tracecontext,w3c", "(unknown: w3c)"),
        ("OTEL_SDK_DISABLED", "yes", "true or false"),
        ("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops", "(item 2 is not key=value)"),
    ],
)
def test_a_bad_value_is_exit_2_in_one_line_before_anything_starts(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    # PRE_START_PATH would leave a mark if anything ran.
    mark = tmp_path / "ran"
    script = tmp_path / "prestart.sh"
    script.write_text(f"touch {mark}\n")
    env = {"APP_DIR": str(DEMO), "PRE_START_PATH": str(script), "BIND": "127.0.0.1:1", variable: value}
    result = run_launcher(env, ("run",))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"asgi-launcher: error: {variable}={value!r} is invalid: expected {lines[0].split('expected ', 1)[1]}"
    ]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr and not mark.exists()


def test_a_malformed_header_is_refused_without_showing_its_value() -> None:
    result = run_launcher({"APP_DIR": str(DEMO), "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization {SECRET}"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "asgi-launcher: error: OTEL_EXPORTER_OTLP_HEADERS='***' is invalid: expected header=value pairs "
        "separated by commas (values percent-encoded) (item 1 is not key=value)"
    )


def test_what_is_missing_for_tracing_that_is_on_is_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"needs opentelemetry-exporter-otlp-proto-grpc, which is not installed"
    ):
        check_installed(Tracing(enabled=True, protocol="grpc"))
    with pytest.raises(
        ConfigError, match=r"OTEL_PROPAGATORS names 'b3', which needs opentelemetry-propagator-b3"
    ):
        check_installed(Tracing(enabled=True, propagators=("tracecontext", "b3")))
    check_installed(Tracing(enabled=False, protocol="grpc"))  # off: nothing is needed


def test_tracing_on_without_the_extra_is_exit_2_with_the_install_hint(tmp_path: Path) -> None:
    # A package on PYTHONPATH that shadows the installed OpenTelemetry: as if it were not there.
    shadow = tmp_path / "opentelemetry"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {"APP_DIR": str(DEMO), "PYTHONPATH": str(tmp_path)}
    assert run_launcher(env, ("config",)).returncode == 0  # off: nothing needed
    result = run_launcher({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("run",))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "asgi-launcher: error: tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT set) but the OpenTelemetry SDK "
        "is not installed: pip install 'asgi-launcher[otel]'"
    )


def test_a_bad_endpoint_is_named_without_its_password(tmp_path: Path) -> None:
    """A malformed endpoint's error line keeps a password in it out of CI logs."""
    with pytest.raises(ConfigError) as refused:
        resolve(
            {"APP_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://bob:hunter2@c@collector:4318"},
            Backend,
        )
    message = str(refused.value)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='ftp://bob:***@collector:4318'" in message
    assert "hunter2" not in message
