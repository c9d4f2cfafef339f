#!/bin/sh
# For Dockerfiles that name the reference image's /start.sh: the same launcher, the same contract.
exec asgi-launcher run "$@"
