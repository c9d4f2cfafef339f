# asgi-launcher image: FROM it, COPY ./app /app, run.
#
# The default base is conda-forge's miniforge (the reference image is conda-based; miniforge uses
# only the conda-forge channel, so none of the defaults channel's licence terms apply). Any
# Debian-like base with python3 and pip works too: docker build --build-arg BASE_IMAGE=python:3.11-slim .
ARG BASE_IMAGE=condaforge/miniforge3:24.11.3-2

FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    XDG_CACHE_HOME=/tmp/.cache

# The launcher (with prometheus-client for /metrics, watchfiles for /start-reload.sh, the
# OpenTelemetry SDK and OTLP exporter for OTEL_* tracing), the
# backends with their fast extras (uvloop, httptools), Starlette for the demo and users' apps,
# and dumb-init as PID 1 (a static binary from PyPI: no apt needed). Pure Python: no compiler.
COPY pyproject.toml README.md /tmp/src/
COPY launcher /tmp/src/launcher
COPY plugins /tmp/src/plugins
RUN python3 -m pip install "/tmp/src[metrics,reload,otel]" /tmp/src/plugins/gunicorn-uvicorn \
        /tmp/src/plugins/hypercorn /tmp/src/plugins/granian /tmp/src/plugins/uvicorn "starlette>=0.40" "dumb-init>=1.2" \
    && rm -rf /tmp/src

COPY conf/gunicorn_conf.py /gunicorn_conf.py
COPY conf/hypercorn.toml /hypercorn.toml
COPY conf/start.sh /start.sh
COPY conf/start-reload.sh /start-reload.sh
COPY demo/main.py /app/main.py
RUN chmod 0755 /start.sh /start-reload.sh && chmod -R a+rX /app /gunicorn_conf.py /hypercorn.toml

WORKDIR /app
EXPOSE 80

# With OPS_PORT set, healthy means ready: the master's /readyz (503 before a worker has booted
# and from the first SIGTERM on); without it, any HTTP answer from the app's port (over TLS when
# SSL_CERTFILE is set; see docs/tls.md for what it verifies).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "exec asgi-launcher probe ${OPS_PORT:+--ready}"]

# dumb-init reaps zombies and forwards signals to the launcher only (--single-child): the
# launcher is the server's master and drains workers itself on SIGTERM.
ENTRYPOINT ["dumb-init", "--single-child", "--"]
CMD ["asgi-launcher", "run"]
