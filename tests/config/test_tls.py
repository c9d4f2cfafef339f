"""TLS settings (SSL_*, HTTP2): checked once, before anything starts, for every backend.

Bad input is exit 2 and one line naming the variable; the key's password is never printed.
Certificates are made here with trustme (``launcher.testing.tls``).
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import pytest

from launcher.config.tls import probe_context, server_context
from launcher.launch.prepare import prepare
from launcher.testing import apps
from launcher.testing.process import run_launcher
from launcher.testing.tls import KEY_PASSWORD, Certificates

BACKENDS = ("gunicorn", "hypercorn", "granian", "uvicorn")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("other"), "other")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    apps.install("hello", tmp_path)
    return tmp_path


def one_line_exit_2(env: dict[str, str], app_dir: Path, command: str = "config") -> str:
    result = run_launcher({"APP_DIR": str(app_dir), **env}, (command,))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_tls_settings_resolve_to_absolute_paths_and_the_password_is_never_shown(
    certs: Certificates, app_dir: Path
) -> None:
    env = {
        "APP_DIR": str(app_dir),
        **certs.env(SSL_KEYFILE=str(certs.encrypted_key), SSL_KEYFILE_PASSWORD=KEY_PASSWORD),
        "SSL_CA_CERTS": str(certs.client_ca),
        "SSL_CERT_REQS": "Required",
        "SSL_MIN_VERSION": "1.3",
    }
    result = run_launcher(env, ("config", "--json"))
    assert result.returncode == 0, result
    data = json.loads(result.stdout)
    assert data["ssl_certfile"] == str(certs.cert) and data["ssl_keyfile"] == str(certs.encrypted_key)
    assert data["ssl_keyfile_password"] == "***"
    assert data["sources"]["ssl_keyfile_password"] == "env:SSL_KEYFILE_PASSWORD"
    assert (data["ssl_cert_reqs"], data["ssl_min_version"], data["http2"]) == ("required", "TLSv1.3", False)
    text = run_launcher(env, ("config",))
    assert text.returncode == 0 and KEY_PASSWORD not in text.stdout + text.stderr
    assert "ssl_keyfile_password" in text.stdout and "***" in text.stdout


@pytest.mark.parametrize(
    ("what", "env", "fragment"),
    [
        ("missing certificate", {"SSL_CERTFILE": "/nonexistent/cert.pem"}, "SSL_CERTFILE='/nonexistent/cert.pem'"),
        ("certificate is a directory", {"SSL_CERTFILE": "/"}, "it is a directory"),
        ("certificate file holds no certificate", {"SSL_CERTFILE": "{key}"}, "holds none"),
        ("no key anywhere", {"SSL_CERTFILE": "{cert}"}, "holds no private key: set SSL_KEYFILE"),
        ("missing key", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "/nonexistent/key.pem"}, "SSL_KEYFILE="),
        ("key of another certificate", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{other_key}"}, "holds another one"),
        ("key file holds no key", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{ca}"}, "SSL_KEYFILE="),
        ("encrypted key, no password", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{encrypted}"}, "set SSL_KEYFILE_PASSWORD"),
        ("key without certificate", {"SSL_KEYFILE": "{key}"}, "SSL_KEYFILE is set but SSL_CERTFILE is not"),
        ("CA without certificate", {"SSL_CA_CERTS": "{ca}"}, "SSL_CA_CERTS is set but SSL_CERTFILE is not"),
        ("CA file without a certificate", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{key}", "SSL_CA_CERTS": "{key}"}, "SSL_CA_CERTS="),
        ("missing CA file", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{key}", "SSL_CA_CERTS": "/nonexistent/ca.pem"}, "no such file"),
        ("client certificates without a CA", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{key}", "SSL_CERT_REQS": "required"}, "needs SSL_CA_CERTS"),
        ("client certificates without TLS", {"SSL_CERT_REQS": "optional"}, "SSL_CERT_REQS=optional"),
        ("unknown client certificate mode", {"SSL_CERT_REQS": "maybe"}, "none, optional or required"),
        ("TLS 1.1", {"SSL_MIN_VERSION": "TLSv1.1"}, "TLSv1.2 or TLSv1.3"),
        ("HTTP2 without TLS", {"HTTP2": "true", "SERVER_BACKEND": "hypercorn"}, "HTTP2='true'"),
        ("h2c with TLS", {"SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "{key}", "HTTP2_CLEARTEXT": "true", "SERVER_BACKEND": "hypercorn"}, "HTTP2_CLEARTEXT='true'"),
    ],
)  # fmt: skip
def test_bad_tls_input_is_exit_2_in_one_line(
    what: str, env: dict[str, str], fragment: str, certs: Certificates, other: Certificates, app_dir: Path
) -> None:
    files = {"cert": certs.cert, "key": certs.key, "other_key": other.key, "ca": certs.ca}
    files["encrypted"] = certs.encrypted_key
    env = {name: value.format(**{k: str(v) for k, v in files.items()}) for name, value in env.items()}
    line = one_line_exit_2(env, app_dir)
    assert fragment in line, (what, line)


def test_a_wrong_password_is_named_without_showing_it(certs: Certificates, app_dir: Path) -> None:
    env = certs.env(SSL_KEYFILE=str(certs.encrypted_key), SSL_KEYFILE_PASSWORD="not the s3cret")
    line = one_line_exit_2(env, app_dir)
    assert "SSL_KEYFILE_PASSWORD does not decrypt" in line and "s3cret" not in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_refuses_bad_tls_files_before_anything_starts(
    backend: str, certs: Certificates, other: Certificates, app_dir: Path
) -> None:
    env = {"SERVER_BACKEND": backend, "BIND": "127.0.0.1:1", **certs.env(SSL_KEYFILE=str(other.key))}
    line = one_line_exit_2(env, app_dir, "run")
    assert line.startswith("asgi-launcher: error: SSL_KEYFILE="), line


@pytest.mark.parametrize("backend", ["gunicorn", "uvicorn"])
def test_http2_under_a_backend_without_it_names_the_backends_that_serve_it(
    backend: str, certs: Certificates, app_dir: Path
) -> None:
    line = one_line_exit_2({"SERVER_BACKEND": backend, **certs.env(HTTP2="true")}, app_dir)
    assert "HTTP2=" in line and "hypercorn" in line and "granian" in line, line


def test_granian_refuses_what_it_cannot_do(certs: Certificates, app_dir: Path) -> None:
    env = {"SERVER_BACKEND": "granian", **certs.env()}
    encrypted = {**env, "SSL_KEYFILE": str(certs.encrypted_key), "SSL_KEYFILE_PASSWORD": KEY_PASSWORD}
    line = one_line_exit_2(encrypted, app_dir)
    assert "SSL_KEYFILE_PASSWORD" in line and KEY_PASSWORD not in line
    optional = {**env, "SSL_CA_CERTS": str(certs.client_ca), "SSL_CERT_REQS": "optional"}
    assert "SSL_CERT_REQS='optional'" in one_line_exit_2(optional, app_dir)


def test_a_gunicorn_config_files_certificate_is_the_tls_setting(
    certs: Certificates, other: Certificates, app_dir: Path
) -> None:
    conf = app_dir / "gunicorn_conf.py"
    conf.write_text(f"certfile = {str(certs.cert)!r}\nkeyfile = {str(certs.key)!r}\ncert_reqs = 0\n")
    result = run_launcher({"APP_DIR": str(app_dir)}, ("config", "--json"))
    data = json.loads(result.stdout)
    assert data["ssl_certfile"] == str(certs.cert) and data["sources"]["ssl_certfile"] == f"file:{conf}"
    conf.write_text(f"certfile = {str(certs.cert)!r}\nkeyfile = {str(other.key)!r}\n")
    line = one_line_exit_2({}, app_dir)
    assert f"SSL_KEYFILE (from {conf})" in line, line


def test_a_hypercorn_config_files_certificate_is_the_tls_setting(certs: Certificates, app_dir: Path) -> None:
    conf = app_dir / "hypercorn.toml"
    conf.write_text(f"certfile = {str(certs.cert)!r}\nkeyfile = {str(certs.encrypted_key)!r}\n")
    line = one_line_exit_2({"SERVER_BACKEND": "hypercorn"}, app_dir)
    assert "set SSL_KEYFILE_PASSWORD" in line, line
    conf.write_text(conf.read_text() + f"keyfile_password = {KEY_PASSWORD!r}\n")
    result = run_launcher({"APP_DIR": str(app_dir), "SERVER_BACKEND": "hypercorn"}, ("config", "--json"))
    data = json.loads(result.stdout)
    assert (
        result.returncode == 0 and data["ssl_keyfile_password"] == "***" and KEY_PASSWORD not in result.stdout
    )


def test_the_server_context_follows_the_settings(certs: Certificates, app_dir: Path) -> None:
    env = {"APP_DIR": str(app_dir), **certs.env(SSL_CA_CERTS=str(certs.client_ca), SSL_CERT_REQS="optional")}
    config = prepare(env).config
    context = server_context(config)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2 and context.verify_mode == ssl.CERT_OPTIONAL
    config = prepare({**env, "SSL_MIN_VERSION": "TLSv1.3", "SSL_CERT_REQS": "required"}).config
    context = server_context(config)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3 and context.verify_mode == ssl.CERT_REQUIRED
    # The probe verifies no certificate and, for mutual TLS, shows the server's own.
    probe = probe_context(config)
    assert probe.verify_mode == ssl.CERT_NONE and not probe.check_hostname
    assert os.path.exists(config.ssl_certfile or "")
