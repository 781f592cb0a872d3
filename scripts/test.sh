#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs the whole suite.
# This is the command the README gives and the one CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, by the command each provides: a real Prometheus server
# (which also brings promtool) for the end-to-end tests, VictoriaMetrics (single node) that
# the backfill pushes a year of history into by remote write (testkit/victoria.py),
# buildah and debootstrap to build and run the image, systemd-analyze to verify the
# example unit, chromium to render the landing page headless
# (tests/process/test_landing_chromium.py).
missing=()
for pair in prometheus:prometheus promtool:prometheus victoria-metrics:victoria-metrics \
            buildah:buildah debootstrap:debootstrap systemd-analyze:systemd chromium:chromium; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# Prometheus 3 beside the machine's Prometheus 2: every rule test, dashboard check and
# end-to-end test runs on both (it prints the version it installed).
bash scripts/install-prometheus3.sh

# The real helm binary renders the chart in the tests.
bash scripts/install-helm.sh >/dev/null
# The chart README's generator, to check that its parameters table is up to date.
bash scripts/chart-readme.sh --install
export PATH="$PWD/.cache/helm:$PATH"

# The prlimit case of the hostile-client tests runs the exporter as a non-root user with
# its own process count (tests/process/test_hostile_clients.py).
if [ "$(id -u)" = 0 ] && ! id scenario-test >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin scenario-test
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

exec python3 -m pytest "$@"
