#!/usr/bin/env bash
# Builds arcly's Debian package with cargo-deb, installs it with dpkg and
# checks it: the binary runs, the systemd unit passes `systemd-analyze
# verify`, and the gateway starts with the packaged configuration.
#   check-deb.sh            package a release build (as for a release)
#   check-deb.sh --no-build package the debug binary already built (CI)
set -euo pipefail
cd "$(dirname "$0")/../../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
command -v cargo-deb >/dev/null 2>&1 || cargo install -q --locked cargo-deb --version 3.6.3
for tool in dpkg systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 || { echo "check-deb: $tool is missing (apt-get install -y systemd)" >&2; exit 1; }
done
rm -rf "$target/debian"
if [ "${1:-}" = "--no-build" ]; then
  cargo deb -p arcly --profile dev --no-build --fast -o "$target/debian/"
else
  cargo deb -p arcly -o "$target/debian/"
fi
deb="$(ls "$target"/debian/arcly_*.deb)"
echo "check-deb: built $deb"
dpkg -i "$deb"
test "$(/usr/bin/arcly --version)" = "arcly $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)"
test -f /etc/arcly/arcly.toml
# The configuration may hold secrets: root and the arcly user read it.
test "$(stat -c '%a %U %G' /etc/arcly/arcly.toml)" = "640 root arcly"
id arcly >/dev/null
systemd-analyze verify /lib/systemd/system/arcly.service
# The packaged configuration starts the gateway (on ports of our own).
log="$(mktemp)"
/usr/bin/arcly --config /etc/arcly/arcly.toml --rtmp 127.0.0.1:0 --rtsp off --srt off \
  --webrtc off --http 127.0.0.1:0 2>"$log" &
pid=$!
for _ in $(seq 50); do grep -q "HTTP listening" "$log" && break; sleep 0.1; done
kill "$pid"; wait "$pid" || true
grep -q "HTTP listening" "$log" || { cat "$log" >&2; echo "check-deb: the packaged gateway did not start" >&2; exit 1; }
echo "check-deb: ok: $(/usr/bin/arcly --version), unit verified, configuration starts"
