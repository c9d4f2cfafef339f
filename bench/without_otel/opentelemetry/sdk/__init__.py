# bench/run.py --tracing puts bench/without_otel first on PYTHONPATH for "the launcher without the
# otel extra": this shadows the installed OpenTelemetry SDK (the extra's), as if it were not
# installed. (The API stays: FastAPI itself depends on it.)
raise ImportError("the OpenTelemetry SDK is hidden by bench/without_otel")
