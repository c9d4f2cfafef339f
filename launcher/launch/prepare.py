"""Resolve once, before anything starts: the environment, the selected backend and its own
config file into the one ``Config`` it will serve, checked, with the warnings to show.

``asgi-launcher config`` and ``check`` stop here; ``run`` goes on to ``launcher.launch.run``.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from launcher.backend import Backend
from launcher.config import tls
from launcher.config.model import Config, MissingApp
from launcher.config.resolve import WORKER_BOUNDS, backend_name, effective_env, resolve
from launcher.config.resources import MASTER_RESERVE_MIB, MIB, memory_cap
from launcher.config.settings import from_command_line
from launcher.config.tracing import check_installed
from launcher.errors import ConfigError


@dataclass(frozen=True)
class Prepared:
    """The backend, the configuration it will serve, and one line for each warning."""

    backend: Backend
    config: Config
    warnings: tuple[str, ...] = ()


def prepare(env: Mapping[str, str]) -> Prepared:
    """Resolve the full configuration the backend will get; raises ``ConfigError``.

    A missing app raises ``MissingApp`` carrying everything else resolved (including the
    backend's config file), so ``config`` can still show it.
    """
    # Imported here: package metadata and stevedore cost ~40 ms to import, and `run` starts the
    # app's import check before this, so the two overlap.
    from launcher.launch import discovery, reload

    name, backend = discovery.select(backend_name(env))
    missing: MissingApp | None = None
    try:
        config = resolve(env, backend, selected=name)
    except MissingApp as exc:
        if exc.config is None:
            raise
        missing, config = exc, exc.config
    given, _ = effective_env(env)
    # What a config file prints (some print their settings) goes to stderr, never into the
    # stdout of `config --json`; after a ConfigError the one line is all that is shown.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            config = config.with_file_settings(backend.load_config_file(config, given))
        tls.check(config)  # the certificate, its key, the CA file: read and tried, for every backend
        backend.validate(config)
    except ConfigError:
        raise
    except BaseException:
        _to_stderr(printed.getvalue())
        raise
    if missing is not None:
        raise missing.with_config(config)
    _to_stderr(printed.getvalue())
    reload.check_settings(config, backend)  # what RELOAD cannot honour: refused by config and check too
    check_installed(config.tracing)  # what tracing that is on needs: refused before anything starts
    warnings = list(discovery.other_backend_variables(given, name, backend))
    memory = memory_warning(config)  # workers asked for that the memory limit cannot hold
    if memory is not None:
        warnings.append(memory)
    warnings.extend(reload.warnings(config))
    return Prepared(backend, config, tuple(warnings))


def _to_stderr(text: str) -> None:
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()


# -- the worker count in words ----------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{round(size / MIB, 1):g} MiB"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe_workers(config: Config) -> str:
    """The worker count in words, with what decided it, for the start-up line:
    ``4 workers: 8 CPUs, capped by a 600 MiB memory limit at 128 MiB a worker``."""
    count, cpus = _plural(config.workers, "worker"), _plural(config.cpus, "CPU")
    source = config.sources.get("workers", "")
    cap = memory_cap(config.memory_limit, config.worker_memory)
    at = f"at {config.worker_memory} MiB a worker"
    limit = f"a {_mib(config.memory_limit)} memory limit" if config.memory_limit else ""
    if source == WORKER_BOUNDS["memory"]:
        return f"{count}: {cpus}, capped by {limit} {at}"
    if source == WORKER_BOUNDS["max_workers"]:
        return f"{count}: {cpus}, capped by MAX_WORKERS={config.workers}"
    if source == WORKER_BOUNDS["web_concurrency"]:
        return f"{count}: WEB_CONCURRENCY ({cpus})"
    if from_command_line(source):
        return f"{count}: {source.partition(' ')[2]} ({cpus})"
    if source.startswith(("computed", "default")):
        return f"{count}: {cpus}" + (f" ({limit} allows {cap} {at})" if cap is not None else "")
    return f"{count}: {source}"


def memory_warning(config: Config) -> str | None:
    """One line when a worker count the user set (WEB_CONCURRENCY, a config file) needs more
    memory than the limit holds at WORKER_MEMORY a worker, after the master's reserve."""
    cap = memory_cap(config.memory_limit, config.worker_memory)
    source = config.sources.get("workers", "")
    if cap is None or config.memory_limit is None or config.workers <= cap or source.startswith("computed"):
        return None
    origin = f"WEB_CONCURRENCY={config.workers}" if source == "env:WEB_CONCURRENCY" else source
    return (
        f"{_plural(config.workers, 'worker')} ({origin}) at WORKER_MEMORY={config.worker_memory} MiB "
        f"need {config.workers * config.worker_memory} MiB, more than the {_mib(config.memory_limit)} "
        f"memory limit holds after {MASTER_RESERVE_MIB} MiB for the master ({_plural(cap, 'worker')}): "
        "when they grow to that, the kernel's OOM killer stops workers"
    )
