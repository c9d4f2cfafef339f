#!/usr/bin/env bash
# Development only: the launcher's reload mode (RELOAD=true), for Dockerfiles that name the
# reference image's script. Same contract as /start.sh: the configuration resolved and checked
# by the launcher, prestart run once, then the selected backend (SERVER_BACKEND, any of them)
# serves the app with one worker, restarted when a .py file under $APP_DIR (or RELOAD_DIRS)
# changes. Arguments are passed on to `asgi-launcher run`.
exec asgi-launcher run --reload "$@"
