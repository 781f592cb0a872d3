#!/usr/bin/env bash
# Regenerates the parameters table of helm/scenario-exporter/README.md from the
# `## @param` comments of values.yaml, with Bitnami's readme-generator-for-helm
# (npm), installed into .cache/readme-generator. With --install, only installs it
# (scripts/test.sh does that: tests/packaging/helm/test_chart_docs.py checks the README
# is up to date).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@bitnami/readme-generator-for-helm@2.7.2"
prefix="$PWD/.cache/readme-generator"
generator="$prefix/node_modules/.bin/readme-generator"

if [ ! -x "$generator" ]; then
    npm install --silent --no-audit --no-fund --prefix "$prefix" "$PACKAGE" >/dev/null
fi
if [ "${1:-}" = "--install" ]; then
    exit 0
fi
"$generator" --values helm/scenario-exporter/values.yaml \
    --readme helm/scenario-exporter/README.md >/dev/null
echo "helm/scenario-exporter/README.md: parameters regenerated"
