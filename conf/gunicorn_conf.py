"""The image's default Gunicorn config: the env contract, spelled as Gunicorn settings.

It computes exactly what the launcher computes without it (a test checks that), so copy it to
/app/gunicorn_conf.py as the base of your own and change what you need: what a config file
sets wins over the environment variables.
"""

import os

from asgi_launcher_gunicorn import GunicornBackend
from launcher.config.resolve import resolve

_contract = resolve(os.environ, GunicornBackend)

bind = list(_contract.bind)
workers = _contract.workers
worker_class = _contract.worker_class
loglevel = _contract.log_level
timeout = _contract.timeout
graceful_timeout = _contract.graceful_timeout
keepalive = _contract.keep_alive
limit_request_line = _contract.limit_request_line
limit_request_fields = _contract.limit_request_fields
limit_request_field_size = _contract.limit_request_field_size
accesslog = _contract.access_log
errorlog = _contract.error_log
forwarded_allow_ips = _contract.forwarded_allow_ips
max_requests = _contract.max_requests
max_requests_jitter = _contract.max_requests_jitter
