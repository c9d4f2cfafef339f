#!/usr/bin/env bash
# Development only: one Uvicorn process that restarts when code under $APP_DIR changes.
# Same contract: the configuration is resolved (and checked) by the launcher, prestart is
# sourced as under /start.sh, then Uvicorn serves the resolved app on the resolved address.
set -e
config=$(asgi-launcher config --json)
# One NUL-terminated field each: paths may hold spaces (or anything but NUL).
mapfile -d '' -t fields < <(python3 -c '
import json, sys
c = json.load(sys.stdin)
bind = c["bind"][0]
if bind.startswith("unix:"):
    kind, address, port = "uds", bind[5:], ""
else:
    host, _, port = bind.rpartition(":")
    kind, address = "tcp", host.strip("[]")
for field in (c["app"], c["app_dir"], c["log_level"], c["prestart"] or "", kind, address, port):
    sys.stdout.write(field + "\0")
' <<<"$config")
if [ "${#fields[@]}" -ne 7 ]; then
    echo "asgi-launcher: error: cannot read the resolved configuration" >&2
    exit 1
fi
app=${fields[0]} app_dir=${fields[1]} level=${fields[2]} prestart=${fields[3]}
kind=${fields[4]} address=${fields[5]} port=${fields[6]}
if [ -n "$prestart" ]; then
    echo "asgi-launcher: running prestart script $prestart"
    . "$prestart"
fi
if [ "$kind" = uds ]; then listen=(--uds "$address"); else listen=(--host "$address" --port "$port"); fi
exec uvicorn --reload --reload-dir "$app_dir" --app-dir "$app_dir" "${listen[@]}" --log-level "$level" "$app"
