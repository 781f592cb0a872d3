#!/usr/bin/env bash
# Fetches Prometheus 3's `prometheus` and `promtool` into .cache/prometheus3/, beside the
# machine's own Prometheus 2 (Debian stable's package), so that every check runs on both
# majors. They are Debian unstable's packages, downloaded with `apt-get download` under a
# private apt configuration (its own source list, package lists and cache under
# .cache/apt-unstable/: the machine's sources and installed packages stay as they are) and
# unpacked with `dpkg-deb -x`. Whatever 3.x unstable serves is taken: it moves, and a pinned
# version would vanish. Prints the version it installed.
set -euo pipefail
cd "$(dirname "$0")/.."

target=.cache/prometheus3
state=.cache/apt-unstable
if [ -x "$target/usr/bin/prometheus" ] && [ -x "$target/usr/bin/promtool" ]; then
    "$target/usr/bin/prometheus" --version 2>&1 | head -n 1
    exit 0
fi

mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s unstable main\n' \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$state/sources.list"
apt_options=(
    -o "Dir::Etc::SourceList=$PWD/$state/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$PWD/$state/lists"
    -o "Dir::Cache=$PWD/$state/cache"
    -o "APT::Sandbox::User=root"
)
apt-get "${apt_options[@]}" update -qq
(cd "$state/debs" && rm -f ./*.deb && apt-get "${apt_options[@]}" download prometheus promtool -qq)

for deb in "$state"/debs/*.deb; do
    version=$(dpkg-deb --field "$deb" Version)
    case "$version" in
        3.*) ;;
        *) echo "install-prometheus3: unstable serves $(basename "$deb"), not a 3.x" >&2; exit 1 ;;
    esac
done
rm -rf "$target.tmp" && mkdir -p "$target.tmp"
for deb in "$state"/debs/*.deb; do
    dpkg-deb -x "$deb" "$target.tmp"
done
rm -rf "$target" && mv "$target.tmp" "$target"
"$target/usr/bin/prometheus" --version 2>&1 | head -n 1
