"""OpenTelemetry tracing, configured only by the OpenTelemetry environment variables.

What turns it on: ``OTEL_TRACES_EXPORTER`` naming an exporter, or ``OTEL_EXPORTER_OTLP_ENDPOINT``
(where to send them) being set. ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
turns it off whatever else is set. Nothing else does: ``OTEL_SERVICE_NAME`` alone is often set
for the logs or the metrics of other tools, and without an endpoint the specification's default
is a collector on localhost, which most containers do not have.

The settings table (``launcher.config.settings``) declares each variable with the converters
here; ``resolve`` turns their values into one ``Tracing``, shown by ``asgi-launcher config``
(the headers' values masked: they hold credentials) and used by every worker
(``launcher.observability.tracing``). ``check_installed`` says, before anything starts, what is
missing for a configuration that is on. Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from launcher.errors import BadPart, ConfigError

EXPORTERS = ("otlp", "console")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
#: The propagators the specification names, and the package each needs beyond the SDK's own.
PROPAGATORS: dict[str, str | None] = {
    "tracecontext": None,
    "baggage": None,
    "b3": "opentelemetry-propagator-b3",
    "b3multi": "opentelemetry-propagator-b3",
    "jaeger": "opentelemetry-propagator-jaeger",
    "xray": "opentelemetry-propagator-aws-xray",
    "ottrace": "opentelemetry-propagator-ot-trace",
}
INSTALL = "pip install 'asgi-launcher[otel]'"
#: The variables that ask for tracing (see the module docstring).
TURNED_ON_BY = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}


def _items(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _names(raw: str, known: Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list of ``known`` names (each once, in order), or ``none``: ``()``."""
    names = [name.lower() for name in _items(raw)]
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise BadPart(f"unknown: {', '.join(unknown)}" if unknown else "empty")
    return tuple(dict.fromkeys(names))


def exporters(raw: str) -> tuple[str, ...]:
    """``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or both (comma-separated), or ``none``."""
    return _names(raw, EXPORTERS)


def protocol(raw: str) -> str:
    value = raw.strip().lower()
    if value not in PROTOCOLS:
        raise BadPart("http/json is not supported by the Python SDK" if value == "http/json" else value)
    return value


def without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part, if any, as ``***``."""
    return re.sub(r"(//[^/@:\s]*:)[^/]*@", r"\1***@", url, count=1)


def endpoint(raw: str) -> str:
    """``OTEL_EXPORTER_OTLP_ENDPOINT``: an absolute ``http://`` or ``https://`` URL with a host."""
    value = raw.strip()
    if any(c.isspace() for c in value):
        raise ValueError(raw)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(raw)
    parts.port  # noqa: B018  # ValueError for a port that is not a number from 0 to 65535
    return value


def pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key2=value2``, each part percent-decoded (the W3C Baggage format the
    specification uses for ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_EXPORTER_OTLP_HEADERS``)."""
    found: dict[str, str] = {}
    for number, item in enumerate(_items(raw), 1):
        key, sep, value = item.partition("=")
        key = unquote(key).strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise BadPart(f"item {number} is not key=value")
        found[key] = unquote(value).strip()
    return tuple(found.items())


def header_pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: as ``pairs``, names lower-cased and valid header names."""
    found = tuple((key.lower(), value) for key, value in pairs(raw))
    for number, (key, _) in enumerate(found, 1):
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", key):
            raise BadPart(f"item {number}'s name is not a header name")
    return found


def sampler(raw: str) -> str:
    value = raw.strip().lower()
    if value not in SAMPLERS:
        raise ValueError(raw)
    return value


def ratio(raw: str) -> float:
    value = float(raw.strip())
    if not 0.0 <= value <= 1.0:
        raise ValueError(raw)
    return value


def propagators(raw: str) -> tuple[str, ...]:
    """``OTEL_PROPAGATORS``: a comma-separated list of known propagators, or ``none``."""
    return _names(raw, PROPAGATORS)


def true_or_false(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(raw)
    return value == "true"


@dataclass(frozen=True)
class Tracing:
    """The resolved tracing settings; ``enabled`` False is off (no layer, nothing imported)."""

    enabled: bool = False
    #: One line on what decided ``enabled``.
    why: str = "off: neither OTEL_TRACES_EXPORTER nor OTEL_EXPORTER_OTLP_ENDPOINT is set"
    exporters: tuple[str, ...] = ("otlp",)
    protocol: str = "http/protobuf"
    endpoint: str = DEFAULT_ENDPOINTS["http/protobuf"]
    #: The names of OTEL_EXPORTER_OTLP_HEADERS only: their values stay in the environment, which
    #: the exporter reads itself, and are never shown.
    header_names: tuple[str, ...] = ()
    sampler: str = "parentbased_always_on"
    sampler_arg: float = 1.0
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    service_name: str = "unknown_service"
    resource_attributes: tuple[tuple[str, str], ...] = ()

    def shown(self) -> dict[str, Any]:
        """What ``asgi-launcher config`` shows: the headers as ``name=***``, an endpoint's
        password as ``***``."""
        parts = urlsplit(self.endpoint)
        shown_endpoint = self.endpoint
        if parts.password is not None:
            shown_endpoint = self.endpoint.replace(f":{parts.password}@", ":***@", 1)
        return {
            "enabled": self.enabled,
            "why": self.why,
            "exporters": list(self.exporters),
            "protocol": self.protocol,
            "endpoint": shown_endpoint,
            "headers": [f"{name}=***" for name in self.header_names],
            "sampler": self.sampler,
            "sampler_arg": self.sampler_arg,
            "propagators": list(self.propagators),
            "service_name": self.service_name,
            "resource_attributes": dict(self.resource_attributes),
        }


def resolve_tracing(values: Mapping[str, Any], given: Mapping[str, str]) -> Tracing:
    """The ``Tracing`` the parsed ``values`` of the OTEL variables describe; ``given``: the
    variables set (not empty)."""
    chosen = values["OTEL_TRACES_EXPORTER"]
    asked = [name for name in TURNED_ON_BY if name in given]
    if values["OTEL_SDK_DISABLED"]:
        enabled, why = False, "off: OTEL_SDK_DISABLED=true"
    elif not chosen:
        enabled, why = False, "off: OTEL_TRACES_EXPORTER=none"
    elif asked:
        enabled, why = True, f"on: {' and '.join(asked)} set"
    else:
        enabled, why = False, Tracing.why
    attributes = dict(values["OTEL_RESOURCE_ATTRIBUTES"] or ())
    service = values["OTEL_SERVICE_NAME"] or attributes.get("service.name") or Tracing.service_name
    transport = values["OTEL_EXPORTER_OTLP_PROTOCOL"]
    return Tracing(
        enabled=enabled,
        why=why,
        exporters=chosen or (),
        protocol=transport,
        endpoint=values["OTEL_EXPORTER_OTLP_ENDPOINT"] or DEFAULT_ENDPOINTS[transport],
        header_names=tuple(name for name, _ in values["OTEL_EXPORTER_OTLP_HEADERS"] or ()),
        sampler=values["OTEL_TRACES_SAMPLER"],
        sampler_arg=values["OTEL_TRACES_SAMPLER_ARG"],
        propagators=values["OTEL_PROPAGATORS"],
        service_name=service,
        resource_attributes=tuple(attributes.items()),
    )


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:  # a parent package that cannot be imported
        return True


def check_installed(tracing: Tracing) -> None:
    """What a configuration that is on needs, installed: one ``ConfigError`` line naming it."""
    if not tracing.enabled:
        return
    if _missing("opentelemetry.sdk.trace"):
        raise ConfigError(
            f"tracing is on ({tracing.why[4:]}) but the OpenTelemetry SDK is not installed: {INSTALL}"
        )
    if "otlp" in tracing.exporters:
        module, package = {
            "http/protobuf": (
                "opentelemetry.exporter.otlp.proto.http",
                "opentelemetry-exporter-otlp-proto-http",
            ),
            "grpc": ("opentelemetry.exporter.otlp.proto.grpc", "opentelemetry-exporter-otlp-proto-grpc"),
        }[tracing.protocol]
        if _missing(module):
            hint = INSTALL if tracing.protocol == "http/protobuf" else f"pip install {package}"
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={tracing.protocol} needs {package}, which is not installed: {hint}"
            )
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="opentelemetry_propagator")}
    for name in tracing.propagators:
        if name not in installed:
            raise ConfigError(
                f"OTEL_PROPAGATORS names {name!r}, which needs {PROPAGATORS[name] or 'opentelemetry-api'}: "
                f"pip install {PROPAGATORS[name] or 'opentelemetry-api'}"
            )
