#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs the whole suite.
# This is the command the README gives and the one CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    # The end-to-end tests use a real Prometheus server; Debian's package also brings promtool.
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The real helm binary renders the chart in the tests.
bash scripts/install-helm.sh >/dev/null
export PATH="$PWD/.cache/helm:$PATH"

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

exec python3 -m pytest "$@"
