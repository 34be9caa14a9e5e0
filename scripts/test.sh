#!/bin/sh
# Lint, then the whole test suite against the real kernel (as root).
# Run scripts/setup.sh first (or `scripts/setup.sh test`, which does both).
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${OVERLAYCTL_VENV:-/opt/overlayctl/venv}
cd "$HERE"
echo "== ruff"
"$VENV/bin/ruff" check overlayctl tests scripts
echo "== pytest"
# The installed package is what a user runs; tests import it from the venv.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@" tests
